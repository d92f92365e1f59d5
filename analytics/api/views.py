"""The admin's analytics reports as a staff-only JSON API (`GET /api/analytics/...`).

Thin: validate the query (a malformed parameter is a 400), call the same selectors the admin
pages call, serialize. Guarded by the admin reports' own rule (core.permissions). Accepts
a JWT like the rest of the API, and the admin's session cookie, so the admin's overview can
poll it (GET only: nothing here changes state, so CSRF does not arise).
"""

import functools
from typing import cast

from django.contrib.auth import get_user_model
from django.db.models import Q
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import NotFound
from rest_framework.generics import GenericAPIView
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response

from accounts.authentication import SessionJWTAuthentication
from analytics import selectors
from audit import selectors as audit_selectors
from core import clock
from core.permissions import CanViewReports
from core.replica import read_reports

from . import serializers as s

DENIED = {
    401: OpenApiResponse(description="Not authenticated"),
    403: OpenApiResponse(description="Not staff with the analytics view permission"),
}
BAD_QUERY = {400: OpenApiResponse(description="A malformed query parameter")}


RANGE_HOURS = {"24h": 24, "7d": 168}


class ReportPagination(LimitOffsetPagination):
    """Pages of a report; `count` is capped as the admin's (CAP + 1 means "more than CAP"):
    counted in the report's order, which the per-user reports read from an index, so a count
    never reads a million users."""

    default_limit = 50
    max_limit = 500
    CAP = 10_000  # as the admin's CappedCountPaginator

    def get_count(self, queryset) -> int:
        return queryset[: self.CAP + 1].count()


class ReportView(GenericAPIView):
    authentication_classes = [SessionJWTAuthentication, SessionAuthentication]
    permission_classes = [CanViewReports]
    pagination_class = ReportPagination
    query_serializer: type[s.serializers.Serializer] | None = None

    def initial(self, request, *args, **kwargs) -> None:
        super().initial(request, *args, **kwargs)  # authentication and permission: the primary
        # The report itself reads where the admin's report pages read: the replica, if one is
        # configured (the primary while it is away). DRF looks the handler up after this.
        name = request.method.lower()
        if handler := getattr(self, name, None):
            setattr(self, name, functools.partial(read_reports, handler))

    def query(self) -> dict:
        """The validated query parameters (ValidationError, a 400, on a malformed one)."""
        assert self.query_serializer is not None, "a report view names its query serializer"
        params = self.query_serializer(data=self.request.query_params)
        params.is_valid(raise_exception=True)
        return params.validated_data

    def paginated(self, queryset):
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


def _with_partial(daily: list, today_partial: bool) -> list[dict]:
    last = len(daily) - 1
    return [
        {
            "day": row.day,
            "dau": row.dau,
            "wau": row.wau,
            "mau": row.mau,
            "api_calls": row.api_calls,
            "partial": today_partial and n == last,
        }
        for n, row in enumerate(daily)
    ]


def overview_figures() -> dict:
    """The overview, grouped by where each figure comes from and as of when."""
    data = selectors.overview()
    return {
        "live": selectors.live_tiles(),
        "rolled_up": {
            "as_of": data.freshness.rolled_up_at,
            "api_calls_24h": data.api_calls_24h,
            "top_power_users_24h": data.top_power_users,
            "active_users_30d": _with_partial(data.daily, data.today_partial),
            "session_durations_30d": [{"name": b, "count": n} for b, n in data.durations],
        },
        "synced": {
            "as_of": data.freshness.synced_at,
            "failed_logins_1h": data.failed_logins_1h,
            "failed_logins_by_hour_24h": [
                {"hour": hour, "count": n} for hour, n in data.failed_by_hour
            ],
            "sessions_by_status": [{"name": st, "count": n} for st, n in data.sessions_by_status],
            "newest_idle_users": data.newest_idle_users,
            "attacking_ips": data.attacking_ips,
        },
    }


class OverviewView(ReportView):
    serializer_class = s.OverviewSerializer

    @extend_schema(
        responses={200: s.OverviewSerializer, **DENIED},
        summary="The overview: live tiles, rolled-up and synced figures, each as of when",
    )
    def get(self, request):
        return Response(s.OverviewSerializer(overview_figures()).data)


class OverviewLiveView(ReportView):
    """The overview's live tiles alone: what the admin's front page polls every few seconds."""

    serializer_class = s.LiveTilesSerializer

    @extend_schema(responses={200: s.LiveTilesSerializer, **DENIED}, summary="Live tiles")
    def get(self, request):
        return Response(s.LiveTilesSerializer(selectors.live_tiles()).data)


class PowerUsersView(ReportView):
    serializer_class = s.PowerUserSerializer
    query_serializer = s.PowerUsersQuery

    @extend_schema(
        parameters=[s.PowerUsersQuery],
        responses={200: s.PowerUserSerializer(many=True), **BAD_QUERY, **DENIED},
        summary="Power users: top users by API calls in a window (rolled up)",
    )
    def get(self, request):
        query = self.query()
        users = selectors.power_users(window=query["window"])
        if query.get("search"):
            users = users.filter(username__icontains=query["search"])
        return self.paginated(users)


class IdleUsersView(ReportView):
    serializer_class = s.IdleUserSerializer
    query_serializer = s.IdleUsersQuery

    @extend_schema(
        parameters=[s.IdleUsersQuery],
        responses={200: s.IdleUserSerializer(many=True), **BAD_QUERY, **DENIED},
        summary="Idle users: no activity for 7 days or more, never-active included (synced)",
    )
    def get(self, request):
        query = self.query()
        users = selectors.idle_users(idle_for=query.get("idle_for"))
        if query.get("search"):
            users = users.filter(username__icontains=query["search"])
        return self.paginated(users)


class LiveSessionsView(ReportView):
    serializer_class = s.LiveSessionRowSerializer
    query_serializer = s.LiveSessionsQuery

    @extend_schema(
        parameters=[s.LiveSessionsQuery],
        responses={200: s.LiveSessionRowSerializer(many=True), **BAD_QUERY, **DENIED},
        summary="Live sessions, latest (or oldest) activity first (live, from Redis)",
    )
    def get(self, request):
        query = self.query()
        paginator = cast(ReportPagination, self.paginator)
        paginator.request = request
        paginator.limit = query.get("limit", paginator.default_limit)
        paginator.offset = query.get("offset", 0)
        page = selectors.live_sessions_page(
            status=query.get("status"),
            user_id=query.get("user_id"),
            per_page=paginator.limit,
            offset=paginator.offset,
            oldest_first=query["order"] == "oldest",
        )
        paginator.count = page.total
        rows = s.LiveSessionRowSerializer(page.rows, many=True).data
        return paginator.get_paginated_response(rows)


class SessionHistoryView(ReportView):
    serializer_class = s.SessionHistorySerializer
    query_serializer = s.SessionHistoryQuery

    @extend_schema(
        parameters=[s.SessionHistoryQuery],
        responses={200: s.SessionHistorySerializer(many=True), **BAD_QUERY, **DENIED},
        summary="Session history, newest first (synced)",
    )
    def get(self, request):
        query = self.query()
        sessions = audit_selectors.session_history(
            state=query.get("state"),
            end_reason=query.get("end_reason"),
            user_id=query.get("user_id"),
        )
        if query.get("search"):  # as the admin's search box: username or session id
            text = query["search"]
            sessions = sessions.filter(Q(user__username__icontains=text) | Q(sid__icontains=text))
        # Newest first by the time-ordered primary key, as the admin's list (no sort of all).
        return self.paginated(sessions.select_related("user").order_by("-sid"))


class SuspiciousIpsView(ReportView):
    serializer_class = s.SuspiciousIpSerializer
    query_serializer = s.SuspiciousIpsQuery

    @extend_schema(
        parameters=[s.SuspiciousIpsQuery],
        responses={200: s.SuspiciousIpPageSerializer, **BAD_QUERY, **DENIED},
        summary="Suspicious IPs past the threshold, one row per address (synced)",
    )
    def get(self, request):
        query = self.query()
        limit: int = query.get("limit", ReportPagination.default_limit)
        offset = query.get("offset", 0)
        rows = selectors.suspicious_ips(
            hours=RANGE_HOURS[query["range"]], limit=limit + 1, offset=offset
        )
        # One row past the page tells whether there is a next one, without a count of all.
        return Response(
            {
                "next_offset": offset + limit if len(rows) > limit else None,
                "results": s.SuspiciousIpSerializer(rows[:limit], many=True).data,
            }
        )


class SecurityView(ReportView):
    serializer_class = s.SecuritySerializer
    query_serializer = s.SecurityQuery

    @extend_schema(
        parameters=[s.SecurityQuery],
        responses={200: s.SecuritySerializer, **BAD_QUERY, **DENIED},
        summary="Security: failed logins by hour, suspicious IPs, lock-outs, anomalies",
    )
    def get(self, request):
        hours = RANGE_HOURS[self.query()["range"]]
        data = selectors.security(hours=hours)
        return Response(
            s.SecuritySerializer(
                {
                    "hours": hours,
                    "failed_by_hour": [
                        {"hour": hour, "reason": reason, "failures": n}
                        for hour, reason, n in data.failed_by_hour
                    ],
                    "suspicious_ips": data.suspicious,
                    "lockouts": data.lockouts,
                    "lockouts_available": data.lockouts_available,
                    "anomalies": data.anomalies,
                }
            ).data
        )


class UserDetailView(ReportView):
    serializer_class = s.UserDetailSerializer
    query_serializer = s.UserQuery

    @extend_schema(
        parameters=[s.UserQuery],
        responses={200: s.UserDetailSerializer, 404: OpenApiResponse(), **BAD_QUERY, **DENIED},
        summary="One user: figures, live sessions, timeline and API calls per day",
    )
    def get(self, request, user_id: int):
        query = self.query()
        try:
            detail = selectors.user_detail(
                user_id=user_id, page=query["page"], per_page=query["per_page"]
            )
        except get_user_model().DoesNotExist as exc:
            raise NotFound("No such user.") from exc
        return Response(
            s.UserDetailSerializer(
                {
                    "user": detail.user,
                    "activity": detail.activity,
                    "live": detail.live,
                    "live_available": detail.live_available,
                    "timeline": detail.timeline.entries,
                    "timeline_page": detail.timeline.page,
                    "timeline_has_next": detail.timeline.has_next,
                    "daily_calls_30d": [
                        {"day": day, "api_calls": n} for day, n in detail.daily_calls
                    ],
                    "calls_per_minute_1h": [
                        {"minute": clock.to_datetime(minute), "api_calls": n}
                        for minute, n in detail.calls_per_minute
                    ],
                }
            ).data
        )
