import json

from django.contrib import admin
from django.core.exceptions import FieldDoesNotExist
from django.db.models.constants import LOOKUP_SEP
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from accounts.events import EndReason, FailureReason
from core import clock
from core.admin_tools import (
    CappedCountPaginator,
    CsvExportMixin,
    ReportAdmin,
    fixed_choices_filter,
    user_link,
)

from . import selectors
from .models import AuditEvent, AuditSession, SyncQuarantine


class EndedFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("ended", "Ended"), ("open", "Open")]

    def queryset(self, request, queryset):
        state = self.value() if self.value() in selectors.SESSION_STATES else None
        return selectors.session_history(state=state, queryset=queryset)


@admin.register(AuditSession)
class SessionHistoryAdmin(CsvExportMixin, ReportAdmin, admin.ModelAdmin):
    list_display = (
        "sid_link",
        "user_link",
        "ip",
        "started_at",
        "last_active",
        "ended_at",
        "duration",
        "end_reason",
        "api_call_count",
    )
    list_filter = (EndedFilter, "end_reason")
    search_fields = ("user__username", "sid")
    # Session ids begin with their creation time in milliseconds: newest first is a backward
    # walk of the primary key, where "-started_at" sorted every session per page view.
    ordering = ("-sid",)
    list_select_related = ("user",)
    csv_fields = (
        "sid",
        "user_id",
        "username",
        "ip",
        "user_agent",
        "started_at",
        "last_active",
        "ended_at",
        "duration_seconds",
        "end_reason",
        "api_call_count",
    )

    # The session's own page: what a reader needs, not the sync's bookkeeping (generation,
    # calls before) nor the raw hourly JSON.
    fields = (
        "sid",
        "user_link",
        "ip",
        "user_agent",
        "started_at",
        "last_active",
        "ended_at",
        "duration",
        "end_reason",
        "api_call_count",
        "calls_per_hour",
    )
    readonly_fields = fields

    @admin.display(description="session")
    def sid_link(self, obj):
        # The whole id: ids are time-ordered, so prefixes of sessions started together collide.
        url = reverse("admin:audit_auditsession_change", args=[obj.sid])
        return format_html('<a href="{}"><code class="sh-sid">{}</code></a>', url, obj.sid)

    @admin.display(description="API calls per hour (UTC)")
    def calls_per_hour(self, obj):
        hours: dict[int, int] = {}
        for counts in (obj.hourly_before or {}, obj.hourly_calls or {}):
            for epoch, calls in counts.items():
                hours[int(epoch)] = hours.get(int(epoch), 0) + int(calls)
        if not hours:
            return "none"
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td class='num'>{}</td></tr>",
            (
                (clock.to_datetime(epoch).strftime("%Y-%m-%d %H:00"), f"{calls:,}")
                for epoch, calls in sorted(hours.items())
            ),
        )
        return format_html(
            '<table class="sh-table"><thead><tr><th>hour</th><th class="num">calls</th></tr>'
            "</thead><tbody>{}</tbody></table>",
            rows,
        )

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        session = {"title": "Session", "subtitle": object_id, **(extra_context or {})}
        return super().changeform_view(request, object_id, form_url, session)

    @admin.display(description="user", ordering="user__username")
    def user_link(self, obj):
        return user_link(obj.user_id, obj.user.username)

    @admin.display(description="duration")
    def duration(self, obj):
        seconds = int((obj.last_active - obj.started_at).total_seconds())
        hours, rest = divmod(seconds, 3600)
        return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"

    def csv_value(self, obj, name):
        if name == "username":
            return obj.user.username
        if name == "duration_seconds":
            return int((obj.last_active - obj.started_at).total_seconds())
        return super().csv_value(obj, name)


@admin.register(AuditEvent)
class AuditEventAdmin(CsvExportMixin, ReportAdmin, admin.ModelAdmin):
    list_display = ("occurred_at", "event_type", "user", "username", "ip", "reason", "actor")
    list_filter = (
        "event_type",
        fixed_choices_filter("reason", "reason", [*FailureReason.choices, *EndReason.choices]),
    )
    search_fields = ("username", "session_id")
    ordering = ("-occurred_at", "-id")
    list_select_related = ("user", "actor")
    csv_fields = (
        "occurred_at",
        "event_type",
        "user_id",
        "username",
        "ip",
        "user_agent",
        "session_id",
        "reason",
        "actor_id",
        "stream_id",
    )


# --- refresh tokens ------------------------------------------------------------------------
# simplejwt's own admin pages show each outstanding refresh token in full: a credential that
# works, readable by anyone with view access. These replace them (simplejwt's app comes first
# in INSTALLED_APPS, so its registrations exist here) and show identifiers only.

_RAW_TOKEN = OutstandingToken._meta.get_field("token")


def _reaches_raw_token(model, lookup: str) -> bool:
    for part in lookup.split(LOOKUP_SEP):
        try:
            field = model._meta.get_field(part)
        except FieldDoesNotExist:
            return False
        if field is _RAW_TOKEN:
            return True
        if not field.is_relation or field.related_model is None:
            return False
        model = field.related_model
    return False


class _TokenIdentifiersAdmin(admin.ModelAdmin):
    """Read-only, identifiers only: no page, search or filter ever touches the token text."""

    actions = None
    paginator = CappedCountPaginator
    show_full_result_count = False
    list_per_page = 50

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def lookup_allowed(self, lookup, value, request=None):
        # The changelist takes filters on any local field from its query string:
        # ?token__startswith=… would confirm a token one character at a time.
        if _reaches_raw_token(self.model, lookup):
            return False
        return super().lookup_allowed(lookup, value, request)


admin.site.unregister(OutstandingToken)
admin.site.unregister(BlacklistedToken)


@admin.register(OutstandingToken)
class OutstandingTokenAdmin(_TokenIdentifiersAdmin):
    list_display = ("jti", "user", "created_at", "expires_at", "blacklisted")
    fields = list_display
    readonly_fields = list_display
    search_fields = ("jti", "user__username")
    ordering = ("-id",)

    def get_queryset(self, request):
        return (
            super().get_queryset(request).select_related("user", "blacklistedtoken").defer("token")
        )

    @admin.display(boolean=True, description="blacklisted")
    def blacklisted(self, obj):
        return hasattr(obj, "blacklistedtoken")


@admin.register(BlacklistedToken)
class BlacklistedTokenAdmin(_TokenIdentifiersAdmin):
    list_display = ("jti", "user", "created_at", "expires_at", "blacklisted_at")
    fields = list_display
    readonly_fields = list_display
    search_fields = ("token__jti", "token__user__username")
    ordering = ("-id",)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("token__user").defer("token__token")

    @admin.display(description="jti", ordering="token__jti")
    def jti(self, obj):
        return obj.token.jti

    @admin.display(description="user", ordering="token__user__username")
    def user(self, obj):
        return obj.token.user

    @admin.display(description="created at", ordering="token__created_at")
    def created_at(self, obj):
        return obj.token.created_at

    @admin.display(description="expires at", ordering="token__expires_at")
    def expires_at(self, obj):
        return obj.token.expires_at


@admin.register(SyncQuarantine)
class SyncQuarantineAdmin(ReportAdmin, admin.ModelAdmin):
    """What the sync set aside, read-only: `manage.py sync_quarantine` retries or discards."""

    list_display = ("kind", "key", "short_error", "attempts", "first_seen", "last_seen")
    list_display_links = ("kind",)  # each row has a page: the row as Redis held it
    list_filter = ("kind",)
    search_fields = ("key",)
    ordering = ("-last_seen", "-id")
    fields = ("kind", "key", "error", "attempts", "first_seen", "last_seen", "raw_row")
    readonly_fields = fields

    @admin.display(description="reason")
    def short_error(self, obj):
        return obj.error if len(obj.error) <= 120 else obj.error[:119] + "…"

    @admin.display(description="row as Redis held it")
    def raw_row(self, obj):
        try:
            text = json.dumps(json.loads(obj.raw), indent=2, sort_keys=True)
        except ValueError:
            text = obj.raw
        return format_html("<pre>{}</pre>", text)
