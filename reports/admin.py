from django.contrib import admin
from django.http import Http404, HttpResponseRedirect
from django.urls import reverse

from accounts.livesessions import SessionStatus
from analytics import selectors
from analytics.models import IdleUser, PowerUser, SuspiciousIp, UserActivity
from core.admin_tools import (
    CsvExportMixin,
    IndexOrderedCountPaginator,
    ReportAdmin,
    fixed_choices_filter,
    user_link,
)


class UserLinkMixin(admin.ModelAdmin):
    """A "user" column linking to the per-user page, for rows with user_id and username."""

    @admin.display(description="user", ordering="username")
    def user_link(self, obj):
        return user_link(obj.user_id, obj.username)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        # A row's own page would show its raw fields (`Id: 24h:3`): the user's page instead.
        # (Power user rows are keyed "<window>:<user id>", the others by the user id.)
        user_id = str(object_id).rpartition(":")[2]
        if not self.has_view_permission(request) or not user_id.isdigit():
            raise Http404
        return HttpResponseRedirect(reverse("admin:analytics_user_detail", args=[int(user_id)]))


class WindowFilter(admin.SimpleListFilter):
    title = "window"
    parameter_name = "window"

    def lookups(self, request, model_admin):
        return [("24h", "Last 24 hours"), ("7d", "Last 7 days"), ("30d", "Last 30 days")]

    def choices(self, changelist):
        # No "All": the windows overlap, so mixing them would count the same calls thrice.
        current = self.value() or "24h"
        for value, label in self.lookup_choices:
            yield {
                "selected": current == value,
                "query_string": changelist.get_query_string({self.parameter_name: value}),
                "display": label,
            }

    def queryset(self, request, queryset):
        value = self.value() or "24h"
        if value not in selectors.POWER_USER_WINDOWS:
            value = "24h"
        return selectors.power_users(window=value, queryset=queryset)


@admin.register(PowerUser)
class PowerUserAdmin(UserLinkMixin, CsvExportMixin, ReportAdmin, admin.ModelAdmin):
    list_display = ("user_link", "api_calls", "days_active_30d", "last_active")
    list_filter = (WindowFilter,)
    search_fields = ("username",)
    ordering = ("-api_calls", "user_id")
    sortable_by = ("api_calls", "days_active_30d", "last_active")
    paginator = IndexOrderedCountPaginator
    csv_fields = ("window", "user_id", "username", "api_calls", "days_active_30d", "last_active")


class IdleForFilter(admin.SimpleListFilter):
    title = "idle for"
    parameter_name = "idle"

    def lookups(self, request, model_admin):
        return [
            ("7", "7 days or more"),
            ("30", "30 days or more"),
            ("90", "90 days or more"),
            ("never", "never active"),
        ]

    def queryset(self, request, queryset):
        value = self.value() if self.value() in selectors.IDLE_FOR else None
        return selectors.idle_users(idle_for=value, queryset=queryset)


@admin.register(IdleUser)
class IdleUserAdmin(UserLinkMixin, CsvExportMixin, ReportAdmin, admin.ModelAdmin):
    list_display = ("user_link", "email", "last_active", "idle_days", "never_active", "date_joined")
    list_filter = (IdleForFilter,)
    search_fields = ("username", "email")
    ordering = selectors.IDLE_ORDER  # type: ignore[assignment]  # Django takes expressions
    sortable_by = ("last_active", "idle_days", "date_joined")
    paginator = IndexOrderedCountPaginator
    csv_fields = (
        "user_id",
        "username",
        "email",
        "last_active",
        "idle_days",
        "never_active",
        "date_joined",
    )


@admin.register(UserActivity)
class UserActivityAdmin(UserLinkMixin, CsvExportMixin, ReportAdmin, admin.ModelAdmin):
    list_display = (
        "user_link",
        "status_label",
        "last_active",
        "api_calls_24h",
        "api_calls_7d",
        "api_calls_30d",
        "days_active_30d",
    )
    list_filter = (
        fixed_choices_filter("status", "status", SessionStatus.choices()),
        "never_active",
        "is_active",
    )
    search_fields = ("username", "email")
    ordering = ("-api_calls_24h", "user_id")
    paginator = IndexOrderedCountPaginator
    csv_fields = (
        "user_id",
        "username",
        "email",
        "status",
        "first_active",
        "last_active",
        "api_calls_24h",
        "api_calls_7d",
        "api_calls_30d",
        "days_active_30d",
    )

    @admin.display(description="status", ordering="status")
    def status_label(self, obj):
        return SessionStatus(obj.status).label


@admin.register(SuspiciousIp)
class SuspiciousIpAdmin(CsvExportMixin, ReportAdmin, admin.ModelAdmin):
    list_display = (
        "ip",
        "attempts",
        "usernames_tried",
        "user_agent_count",
        "agents",
        "first_seen",
        "last_seen",
    )
    search_fields = ("id",)
    ordering = ("-usernames_tried", "-attempts")
    csv_fields = (
        "ip",
        "attempts",
        "usernames_tried",
        "user_agent_count",
        "user_agents",
        "first_seen",
        "last_seen",
    )

    @admin.display(description="user agents (first 10)")
    def agents(self, obj):
        return ", ".join(obj.user_agents)

    def csv_value(self, obj, name: str):
        # One agent a line: a header cannot hold a line break, so the lines are the agents.
        if name == "user_agents":
            return "\n".join(obj.user_agents)
        return super().csv_value(obj, name)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        # Nothing more to see about one row than the row: back to the report.
        return HttpResponseRedirect(reverse("admin:analytics_suspiciousip_changelist"))
