"""Shapes of the analytics API: the admin's reports as JSON.

Every figure carries where it comes from: `live` (Redis, as of the answer), `synced` (the audit
tables, as of the last sync) or `rolled_up` (the materialized rollups, as of their last refresh).
"""

from rest_framework import serializers

from accounts.events import EndReason
from accounts.livesessions import SessionStatus
from analytics import selectors
from audit import selectors as audit_selectors
from core import clock

# --- query parameters (validated: a malformed one is a 400, never a 500) --------------------


class PageQuery(serializers.Serializer):
    limit = serializers.IntegerField(required=False, min_value=1, max_value=500)
    offset = serializers.IntegerField(required=False, min_value=0, max_value=10_000_000)


class PowerUsersQuery(PageQuery):
    window = serializers.ChoiceField(choices=selectors.POWER_USER_WINDOWS, default="24h")
    search = serializers.CharField(required=False, max_length=150)


class IdleUsersQuery(PageQuery):
    idle_for = serializers.ChoiceField(
        choices=selectors.IDLE_FOR,
        required=False,
        help_text="7, 30 or 90 (days or more, never-active users included), or never",
    )
    search = serializers.CharField(required=False, max_length=150)


class LiveSessionsQuery(PageQuery):
    status = serializers.ChoiceField(choices=SessionStatus.choices(), required=False)
    user_id = serializers.IntegerField(required=False, min_value=1, max_value=2**62)
    order = serializers.ChoiceField(choices=("latest", "oldest"), default="latest")


class SessionHistoryQuery(PageQuery):
    state = serializers.ChoiceField(choices=audit_selectors.SESSION_STATES, required=False)
    end_reason = serializers.ChoiceField(choices=EndReason.choices, required=False)
    user_id = serializers.IntegerField(required=False, min_value=1, max_value=2**62)
    search = serializers.CharField(
        required=False, max_length=150, help_text="part of the username or the session id"
    )


class SuspiciousIpsQuery(PageQuery):
    range = serializers.ChoiceField(choices=("24h", "7d"), default="24h")


class SecurityQuery(serializers.Serializer):
    range = serializers.ChoiceField(choices=("24h", "7d"), default="24h")


class UserQuery(serializers.Serializer):
    page = serializers.IntegerField(default=1, min_value=1, max_value=100_000)
    per_page = serializers.IntegerField(
        default=50, min_value=1, max_value=200, help_text="timeline entries a page"
    )


# --- answers ---------------------------------------------------------------------------------


class LiveTilesSerializer(serializers.Serializer):
    source = serializers.SerializerMethodField()  # type: ignore[assignment]  # a JSON key, not DRF's `source`
    available = serializers.BooleanField(help_text="false while Redis is unavailable")
    as_of = serializers.DateTimeField()
    active_now = serializers.IntegerField(help_text="sessions with activity in the last 5 min")
    api_calls_per_minute = serializers.IntegerField(help_text="API calls in the last 60 s")
    failed_logins_5m = serializers.IntegerField()
    failed_logins_1h = serializers.IntegerField()
    ips_locked = serializers.IntegerField(help_text="addresses locked out now")
    accounts_locked = serializers.IntegerField(
        help_text="usernames locked out now (everywhere or from one address)"
    )

    def get_source(self, obj) -> str:
        return "live"


class PowerUserSerializer(serializers.Serializer):
    user_id = serializers.IntegerField()
    username = serializers.CharField()
    window = serializers.CharField()
    api_calls = serializers.IntegerField()
    days_active_30d = serializers.IntegerField()
    last_active = serializers.DateTimeField(allow_null=True)


class IdleUserSerializer(serializers.Serializer):
    user_id = serializers.IntegerField()
    username = serializers.CharField()
    email = serializers.CharField()
    date_joined = serializers.DateTimeField()
    last_active = serializers.DateTimeField(allow_null=True)
    idle_days = serializers.IntegerField(allow_null=True)
    never_active = serializers.BooleanField()


class SuspiciousIpSerializer(serializers.Serializer):
    ip = serializers.CharField()
    user_agent_count = serializers.IntegerField()
    user_agents = serializers.ListField(
        child=serializers.CharField(), help_text="the first 10, alphabetically"
    )
    attempts = serializers.IntegerField()
    usernames_tried = serializers.IntegerField()
    first_seen = serializers.DateTimeField()
    last_seen = serializers.DateTimeField()


class SuspiciousIpPageSerializer(serializers.Serializer):
    next_offset = serializers.IntegerField(
        allow_null=True, help_text="the offset of the next page; null on the last one"
    )
    results = SuspiciousIpSerializer(many=True)


class DayActivitySerializer(serializers.Serializer):
    day = serializers.DateField()
    dau = serializers.IntegerField()
    wau = serializers.IntegerField()
    mau = serializers.IntegerField()
    api_calls = serializers.IntegerField()
    partial = serializers.BooleanField(help_text="today (UTC): the day is still filling")  # type: ignore[assignment]  # a JSON key, not DRF's `source`


class CountSerializer(serializers.Serializer):
    name = serializers.CharField()
    count = serializers.IntegerField()


class HourCountSerializer(serializers.Serializer):
    hour = serializers.DateTimeField()
    count = serializers.IntegerField()


class RolledUpSerializer(serializers.Serializer):
    source = serializers.CharField(default="rolled_up")  # type: ignore[assignment]  # a JSON key, not DRF's `source`
    as_of = serializers.DateTimeField(allow_null=True, help_text="last refresh of the rollups")
    api_calls_24h = serializers.IntegerField()
    top_power_users_24h = PowerUserSerializer(many=True)
    active_users_30d = DayActivitySerializer(many=True)
    session_durations_30d = CountSerializer(many=True)


class SyncedSerializer(serializers.Serializer):
    source = serializers.CharField(default="synced")  # type: ignore[assignment]  # a JSON key, not DRF's `source`
    as_of = serializers.DateTimeField(allow_null=True, help_text="last sync of Redis into SQL")
    failed_logins_1h = serializers.IntegerField()
    failed_logins_by_hour_24h = HourCountSerializer(many=True)
    sessions_by_status = CountSerializer(many=True)
    newest_idle_users = IdleUserSerializer(many=True)
    attacking_ips = SuspiciousIpSerializer(many=True)


class OverviewSerializer(serializers.Serializer):
    live = LiveTilesSerializer()
    rolled_up = RolledUpSerializer()
    synced = SyncedSerializer()


class LiveSessionRowSerializer(serializers.Serializer):
    sid = serializers.CharField(source="session.sid")
    user_id = serializers.IntegerField(source="session.user_id")
    username = serializers.CharField()
    ip = serializers.CharField(source="session.ip")
    user_agent = serializers.CharField(source="session.user_agent")
    started_at = serializers.SerializerMethodField()
    last_active = serializers.SerializerMethodField()
    api_calls = serializers.IntegerField(source="session.api_call_count")
    status = serializers.ChoiceField(choices=SessionStatus.choices())

    def get_started_at(self, row) -> str:
        return clock.to_datetime(row.session.started_at).isoformat()

    def get_last_active(self, row) -> str:
        return clock.to_datetime(row.session.last_active).isoformat()


class SessionHistorySerializer(serializers.Serializer):
    sid = serializers.CharField()
    user_id = serializers.IntegerField()
    username = serializers.CharField(source="user.username")
    ip = serializers.CharField(allow_null=True)
    user_agent = serializers.CharField()
    started_at = serializers.DateTimeField()
    last_active = serializers.DateTimeField()
    ended_at = serializers.DateTimeField(allow_null=True)
    end_reason = serializers.CharField()
    duration_seconds = serializers.SerializerMethodField()
    api_calls = serializers.IntegerField(source="api_call_count")

    def get_duration_seconds(self, obj) -> int:
        return int((obj.last_active - obj.started_at).total_seconds())


class FailedHourSerializer(serializers.Serializer):
    hour = serializers.DateTimeField()
    reason = serializers.CharField()
    failures = serializers.IntegerField()


class LockoutSerializer(serializers.Serializer):
    scope = serializers.CharField()
    username = serializers.CharField()
    ip = serializers.CharField()
    locked_until = serializers.SerializerMethodField()

    def get_locked_until(self, obj) -> str:
        return clock.to_datetime(obj.locked_until).isoformat()


class AnomalySerializer(serializers.Serializer):
    occurred_at = serializers.DateTimeField()
    user_id = serializers.IntegerField(allow_null=True)
    username = serializers.CharField()
    sid = serializers.CharField()
    earlier_network = serializers.CharField()
    ip = serializers.CharField()
    user_agent = serializers.CharField()
    end_reason = serializers.CharField()


class SecuritySerializer(serializers.Serializer):
    hours = serializers.IntegerField()
    failed_by_hour = FailedHourSerializer(many=True, help_text="synced")
    suspicious_ips = SuspiciousIpSerializer(many=True, help_text="synced")
    lockouts = LockoutSerializer(many=True, help_text="live")
    lockouts_available = serializers.BooleanField()
    anomalies = AnomalySerializer(many=True, help_text="synced")


class UserActivitySerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=SessionStatus.choices())
    first_active = serializers.DateTimeField(allow_null=True)
    last_active = serializers.DateTimeField(allow_null=True)
    api_calls_24h = serializers.IntegerField()
    api_calls_7d = serializers.IntegerField()
    api_calls_30d = serializers.IntegerField()
    days_active_30d = serializers.IntegerField()


class TimelineEntrySerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    kind = serializers.CharField()
    detail = serializers.CharField()
    ip = serializers.CharField()
    user_agent = serializers.CharField()
    alarming = serializers.BooleanField()


class MinuteCallsSerializer(serializers.Serializer):
    minute = serializers.DateTimeField()
    api_calls = serializers.IntegerField()


class DayCallsSerializer(serializers.Serializer):
    day = serializers.DateField()
    api_calls = serializers.IntegerField()


class UserDetailSerializer(serializers.Serializer):
    user_id = serializers.IntegerField(source="user.pk")
    username = serializers.CharField(source="user.username")
    email = serializers.CharField(source="user.email")
    is_active = serializers.BooleanField(source="user.is_active")
    date_joined = serializers.DateTimeField(source="user.date_joined")
    activity = UserActivitySerializer(allow_null=True, help_text="rolled up")
    live_sessions = LiveSessionRowSerializer(many=True, source="live", help_text="live")
    live_available = serializers.BooleanField()
    timeline = TimelineEntrySerializer(many=True, help_text="synced, newest first: one page")
    timeline_page = serializers.IntegerField()
    timeline_has_next = serializers.BooleanField()
    daily_calls_30d = DayCallsSerializer(many=True, help_text="rolled up")
    calls_per_minute_1h = MinuteCallsSerializer(
        many=True, help_text="live (Redis), oldest first; the last minute is still filling"
    )
