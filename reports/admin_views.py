"""The admin's analytics pages that are not a model's changelist: overview, live sessions,
security, one user. Thin: permissions, forms and rendering; the reads are in selectors and the
writes in accounts.services."""

from datetime import timedelta

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods

from accounts import services as account_services
from accounts.events import EndReason
from accounts.livesessions import SessionStatus
from analytics import selectors
from core import clock
from core.admin_tools import csv_response
from core.conf import get_settings
from core.redis import REDIS_UNAVAILABLE
from core.replica import read_reports, replica_lag
from reports import charts

VIEW_PERM = "analytics.view_analytics"
MANAGE_PERM = "analytics.manage_sessions"
STATUSES = tuple(SessionStatus)
USER_TIMELINE_PAGE = 50


def _require(request, perm: str) -> None:
    if not request.user.has_perm(perm):
        raise PermissionDenied


def _context(request, title: str, **extra) -> dict:
    return {
        **admin.site.each_context(request),
        "title": title,
        "can_manage": request.user.has_perm(MANAGE_PERM),
        **extra,
    }


def _int(value, default: int, low: int = 1, high: int = 10_000) -> int:
    try:
        return min(max(int(value), low), high)
    except (TypeError, ValueError):
        return default


# --- overview ------------------------------------------------------------------------------


def overview_context(request) -> dict:
    if not request.user.has_perm(VIEW_PERM):
        return {}
    data = read_reports(selectors.overview)
    point = charts.Point
    days = [f"{r.day:%b %d}" for r in data.daily]
    return {
        "overview": data,
        "replica": replica_lag(),
        "tiles": selectors.live_tiles(),
        "live_url": reverse("analytics_api:overview-live"),
        "idle_user_days": get_settings().IDLE_USER_DAYS,
        "dau_chart": charts.line_chart(
            {
                "DAU": [point(d, r.dau) for d, r in zip(days, data.daily, strict=True)],
                "WAU": [point(d, r.wau) for d, r in zip(days, data.daily, strict=True)],
                "MAU": [point(d, r.mau) for d, r in zip(days, data.daily, strict=True)],
            },
            "Daily, weekly and monthly active users over 30 days",
            x_title="day (UTC)",
            y_title="active users",
            unit="users",
            partial_last=data.today_partial,
        ),
        "status_chart": charts.bar_chart(
            [point(SessionStatus(status).label, n) for status, n in data.sessions_by_status],
            "Open sessions by status",
            x_title="status (last activity: < 5 min, < 1 h, older)",
            y_title="open sessions",
            unit="sessions",
        ),
        "duration_chart": charts.bar_chart(
            [point(bucket, n) for bucket, n in data.durations],
            "Duration of sessions ended in the last 30 days",
            x_title="session duration",
            y_title="sessions ended",
            unit="sessions",
        ),
        "failed_chart": charts.bar_chart(
            [point(f"{hour:%H:00}", n) for hour, n in _every_hour(data.failed_by_hour, 24)],
            "Failed logins per hour, last 24 hours",
            x_title="hour (UTC)",
            y_title="failed logins per hour",
            unit="failed logins",
        ),
    }


def _every_hour(counts: list[tuple], hours: int) -> list[tuple]:
    """Hourly counts with the empty hours filled in, oldest first, ending this hour."""
    by_hour = dict(counts)
    end = clock.to_datetime(clock.now()).replace(minute=0, second=0, microsecond=0)
    return [
        (end - timedelta(hours=h), by_hour.get(end - timedelta(hours=h), 0))
        for h in range(hours - 1, -1, -1)
    ]


# --- live sessions -------------------------------------------------------------------------


def _user_id_for(query: str) -> int | None:
    if not query:
        return None
    user = get_user_model().objects.filter(username__iexact=query.strip()).first()
    return user.pk if user else -1


@require_http_methods(["GET", "POST"])
def live_sessions(request):
    _require(request, VIEW_PERM)
    if request.method == "POST":
        return _live_sessions_action(request)
    status = request.GET.get("status") if request.GET.get("status") in STATUSES else None
    query = request.GET.get("q", "").strip()[:150]
    user_id = _int(request.GET.get("user"), 0, 0, 2**62) or _user_id_for(query)
    page_number = _int(request.GET.get("page"), 1)
    oldest_first = request.GET.get("order") == "oldest"
    try:
        page = selectors.live_sessions_page(
            status=status, user_id=user_id, page=page_number, oldest_first=oldest_first
        )
        available = True
    except REDIS_UNAVAILABLE:
        page, available = None, False
    return TemplateResponse(
        request,
        "analytics/live_sessions.html",
        _context(
            request,
            "Live sessions",
            page=page,
            available=available,
            status=status,
            statuses=STATUSES,
            query=query,
            user_id=user_id,
            oldest_first=oldest_first,
        ),
    )


def _live_sessions_action(request):
    _require(request, MANAGE_PERM)
    action = request.POST.get("action")
    actor = request.user.pk
    if action == "end_selected":
        sids = request.POST.getlist("sid")[:1000]
        ended = sum(
            account_services.session_end(sid=sid, reason=EndReason.REVOKED, actor_id=actor)
            for sid in sids
        )
    elif action == "end_user":
        user_id = _int(request.POST.get("user_id"), 0, 0, 2**62)
        ended = account_services.sessions_end_for_user(
            user_id=user_id, reason=EndReason.REVOKED, actor_id=actor
        )
    elif action == "end_all":
        ended = account_services.sessions_end_all(actor_id=actor)
    else:
        messages.error(request, "Unknown action.")
        return HttpResponseRedirect(request.get_full_path())
    messages.success(request, f"Ended {ended} session{'s' if ended != 1 else ''}.")
    return HttpResponseRedirect(_same_site(request, request.POST.get("next")))


def _same_site(request, url: str | None) -> str:
    """`next` when it stays on this site (same host, no scheme change), else the live sessions.

    A form field is attacker-controlled: followed blindly, a crafted link to the admin ends
    on a phishing page that looks like the next step (an open redirect).
    """
    if url and url_has_allowed_host_and_scheme(
        url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return url
    return reverse("admin:analytics_live_sessions")


def live_sessions_csv(request):
    _require(request, VIEW_PERM)
    status = request.GET.get("status") if request.GET.get("status") in STATUSES else None
    user_id = _int(request.GET.get("user"), 0, 0, 2**62) or _user_id_for(request.GET.get("q", ""))

    def rows():
        page_number = 1
        while True:
            page = selectors.live_sessions_page(
                status=status, user_id=user_id, page=page_number, per_page=1000
            )
            for row in page.rows:
                s = row.session
                yield [
                    s.sid,
                    row.username,
                    s.ip,
                    s.user_agent,
                    clock.to_datetime(s.started_at).isoformat(),
                    clock.to_datetime(s.last_active).isoformat(),
                    s.api_call_count,
                    row.status,
                ]
            if page_number >= page.pages:
                return
            page_number += 1

    return csv_response(
        filename="live-sessions.csv",
        header=[
            "sid",
            "user",
            "ip",
            "user_agent",
            "started_at",
            "last_active",
            "api_call_count",
            "status",
        ],
        rows=rows(),
    )


# --- security ------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
def security(request):
    _require(request, VIEW_PERM)
    if request.method == "POST":
        _require(request, MANAGE_PERM)
        key = request.POST.get("lockout", "")[:300]
        if account_services.lockout_lift(key=key, actor_id=request.user.pk):
            messages.success(request, "Lock-out lifted.")
        else:
            messages.warning(request, "That lock-out had already ended.")
        return HttpResponseRedirect(reverse("admin:analytics_security"))
    hours = 168 if request.GET.get("range") == "7d" else 24
    data = read_reports(selectors.security, hours=hours)
    totals: dict = {}
    for hour, _reason, failures in data.failed_by_hour:
        totals[hour] = totals.get(hour, 0) + failures
    chart = charts.bar_chart(
        [
            charts.Point(f"{hour:%m-%d %H:00}", n)
            for hour, n in _every_hour(list(totals.items()), hours)
        ],
        f"Failed logins per hour, last {'7 days' if hours == 168 else '24 hours'}",
        x_title="hour (UTC)",
        y_title="failed logins per hour",
        unit="failed logins",
    )
    return TemplateResponse(
        request,
        "analytics/security.html",
        _context(
            request,
            "Security",
            data=data,
            chart=chart,
            hours=hours,
            threshold=selectors.suspicious_threshold(),
            now=clock.now(),
        ),
    )


# --- one user ------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
def user_detail(request, user_id: int):
    _require(request, VIEW_PERM)
    if request.method == "POST":
        _require(request, MANAGE_PERM)
        ended = account_services.sessions_end_for_user(
            user_id=user_id, reason=EndReason.REVOKED, actor_id=request.user.pk
        )
        messages.success(request, f"Ended {ended} session{'s' if ended != 1 else ''}.")
        return HttpResponseRedirect(request.get_full_path())
    try:
        detail = read_reports(
            selectors.user_detail,
            user_id=user_id,
            page=_int(request.GET.get("page"), 1),
            per_page=USER_TIMELINE_PAGE,
        )
    except get_user_model().DoesNotExist as exc:
        raise Http404("No such user.") from exc
    daily_chart = charts.bar_chart(
        [charts.Point(f"{day:%m-%d}", calls) for day, calls in _every_day(detail.daily_calls, 30)],
        "API calls per UTC day, last 30 days",
        x_title="day (UTC)",
        y_title="API calls per day",
        unit="calls",
    )
    minute_chart = charts.bar_chart(
        [
            charts.Point(f"{clock.to_datetime(minute):%H:%M}", calls)
            for minute, calls in detail.calls_per_minute
        ],
        "API calls per minute, last hour (live from Redis)",
        x_title="minute (UTC)",
        y_title="API calls per minute",
        unit="calls",
    )
    return TemplateResponse(
        request,
        "analytics/user_detail.html",
        _context(
            request,
            f"User {detail.user.get_username()}",
            detail=detail,
            chart=daily_chart,
            minute_chart=minute_chart,
            calls_last_hour=sum(calls for _, calls in detail.calls_per_minute),
        ),
    )


def _every_day(counts: list[tuple], days: int) -> list[tuple]:
    """Daily counts with the empty UTC days filled in, oldest first, ending today."""
    by_day = dict(counts)
    today = clock.to_datetime(clock.now()).date()
    return [
        (today - timedelta(days=d), by_day.get(today - timedelta(days=d), 0))
        for d in range(days - 1, -1, -1)
    ]
