"""Reads behind the admin's analytics pages: the SQL views (as Grafana reads them) and Redis.

Each function makes a fixed, small number of queries whatever the data size; the admin tests
assert those numbers.
"""

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.contrib.auth import get_user_model
from django.db import connection

from accounts import livesessions, throttling
from accounts.events import EventType, LockScope
from accounts.selectors import session_status
from audit.models import AuditEvent, AuditSession
from sessionhub import clock
from sessionhub.conf import get_settings
from sessionhub.redis import REDIS_UNAVAILABLE, get_redis
from sessionhub.rediskeys import keys

from .models import DailyRollup, IdleUser, PowerUser, SuspiciousIp, UserActivity


def _rows(sql: str, params=()) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


@dataclass
class LiveFigures:
    available: bool
    active_now: int = 0
    sync_lag_seconds: float = 0.0
    sync_backlog: int = 0


def live_figures() -> LiveFigures:
    """Active sessions and sync lag straight from Redis (one round trip)."""
    now = clock.now()
    try:
        pipe = get_redis().pipeline(transaction=False)
        pipe.zcount(keys.active_index(), now - get_settings().ACTIVE_WINDOW, "+inf")
        pipe.xrange(keys.events(), count=1)
        pipe.scard(keys.dirty())
        pipe.scard(keys.dirty_inflight())
        active, oldest, dirty, inflight = pipe.execute()
    except REDIS_UNAVAILABLE:
        return LiveFigures(available=False)
    lag = now - int(oldest[0][0].decode().split("-")[0]) / 1000 if oldest else 0.0
    return LiveFigures(True, active, max(lag, 0.0), dirty + inflight)


@dataclass
class LiveTiles:
    """The overview's figures that move by the second, all read from Redis now (`as_of`).

    Calls and failed logins come from per-minute counters the tracking flush and the login
    failure script keep (sessionhub.rediskeys.per_minute): "API calls in the last 60 s" weighs
    the previous minute by the share of it still inside the window; the failed-login windows
    are whole minutes (the current one and the 4, resp. 59, before it).
    """

    available: bool
    as_of: datetime
    active_now: int = 0
    api_calls_per_minute: int = 0
    failed_logins_5m: int = 0
    failed_logins_1h: int = 0
    ips_locked: int = 0
    accounts_locked: int = 0


def live_tiles() -> LiveTiles:
    """2 Redis round trips (counters, then the locks in force), no SQL."""
    now = clock.now()
    as_of = clock.to_datetime(now)
    minute = int(now // 60)
    try:
        pipe = get_redis().pipeline(transaction=False)
        pipe.zcount(keys.active_index(), now - get_settings().ACTIVE_WINDOW, "+inf")
        pipe.mget([keys.per_minute("api_calls", minute - n) for n in (0, 1)])
        pipe.mget([keys.per_minute("login_failures", minute - n) for n in range(60)])
        active, calls, failures = pipe.execute()
        lockouts = throttling.lockouts_current(now=now)
    except REDIS_UNAVAILABLE:
        return LiveTiles(available=False, as_of=as_of)
    this_minute, last_minute = (int(v or 0) for v in calls)
    still_inside = 1 - (now - minute * 60) / 60
    failures = [int(v or 0) for v in failures]
    return LiveTiles(
        available=True,
        as_of=as_of,
        active_now=active,
        api_calls_per_minute=round(this_minute + last_minute * still_inside),
        failed_logins_5m=sum(failures[:5]),
        failed_logins_1h=sum(failures),
        ips_locked=len({lock.ip for lock in lockouts if lock.scope == LockScope.IP}),
        accounts_locked=len(
            {lock.username.casefold() for lock in lockouts if lock.scope != LockScope.IP}
        ),
    )


@dataclass
class Freshness:
    """How old the figures that are not live are: `synced_at`, the last sync of Redis into the
    audit tables (plain SQL views over them); `rolled_up_at`, the last refresh of the
    materialized rollups. None when unknown (never yet, or Redis away)."""

    synced_at: datetime | None
    rolled_up_at: datetime | None


def freshness() -> Freshness:
    try:
        synced, rolled = get_redis().hmget(
            keys.sync_state(), "last_success", "rollups_refreshed_at"
        )
    except REDIS_UNAVAILABLE:
        return Freshness(None, None)

    def at(value):
        return clock.to_datetime(float(value)) if value else None

    return Freshness(at(synced), at(rolled))


# --- the reports' filters: one definition, for the admin's list filters and the API ----------

POWER_USER_WINDOWS = ("24h", "7d", "30d")
IDLE_FOR = ("7", "30", "90", "never")
SESSION_STATES = ("ended", "open")


def power_users(*, window: str = "24h", queryset=None):
    """Top users by API calls in a window (the power users report), biggest first."""
    queryset = PowerUser.objects.all() if queryset is None else queryset
    return queryset.filter(window=window).order_by("-api_calls", "user_id")


def idle_users(*, idle_for: str | None = None, queryset=None):
    """Users idle for N days or more (never-active users included), or never active only."""
    queryset = IdleUser.objects.all() if queryset is None else queryset
    if idle_for == "never":
        return queryset.filter(never_active=True)
    if idle_for is not None:
        return queryset.filter(idle_days__gte=int(idle_for)) | queryset.filter(never_active=True)
    return queryset


def newest_idle_users(*, limit: int = 5):
    """The users who went idle most recently: the latest last activity among idle users.

    Never-active users are left out here (they are in the idle users report): ranking them
    by the day they joined sorted every user (3.7 s at 1M users in bench_admin), where this
    reads the index on the last activity.
    """
    return IdleUser.objects.filter(never_active=False).order_by("-last_active")[:limit]


def session_history(
    *,
    state: str | None = None,
    end_reason: str | None = None,
    user_id: int | None = None,
    queryset=None,
):
    """Sessions as the session history report filters them (open or ended, end reason, user)."""
    queryset = AuditSession.objects.all() if queryset is None else queryset
    if state == "ended":
        queryset = queryset.filter(ended_at__isnull=False)
    elif state == "open":
        queryset = queryset.filter(ended_at__isnull=True)
    if end_reason:
        queryset = queryset.filter(end_reason=end_reason)
    if user_id is not None:
        queryset = queryset.filter(user_id=user_id)
    return queryset


def suspicious_ips():
    return SuspiciousIp.objects.order_by("-usernames_tried", "-attempts", "ip")


def attacking_ips(*, minutes: int = 60, limit: int = 5):
    """Suspicious IPs with a failed login in the last `minutes` (synced events)."""
    since = clock.to_datetime(clock.now()) - timedelta(minutes=minutes)
    return suspicious_ips().filter(last_seen__gte=since)[:limit]


@dataclass
class Overview:
    live: LiveFigures
    today: DailyRollup | None
    api_calls_24h: int
    failed_logins_1h: int
    daily: list[DailyRollup]
    sessions_by_status: list[tuple[str, int]]
    durations: list[tuple[str, int]]
    failed_by_hour: list[tuple[datetime, int]]
    top_power_users: list = field(default_factory=list)
    newest_idle_users: list = field(default_factory=list)
    attacking_ips: list = field(default_factory=list)
    freshness: Freshness = field(default_factory=lambda: Freshness(None, None))
    today_partial: bool = False  # the last day of `daily` is today (UTC), still filling
    rollup_days: int = field(default=30)


def overview() -> Overview:
    """Everything on the admin's front page: 9 SQL queries and 2 Redis round trips."""
    since = clock.to_datetime(clock.now()) - timedelta(hours=1)
    daily = list(DailyRollup.objects.order_by("-day")[:30])[::-1]
    [(calls_24h,)] = _rows("SELECT coalesce(sum(api_calls_24h), 0) FROM analytics_user_stats")
    failed_1h = AuditEvent.objects.filter(
        event_type=EventType.LOGIN_FAILED, occurred_at__gte=since
    ).count()
    by_status = _rows("SELECT status, sessions FROM analytics_sessions_by_status")
    durations = _rows("SELECT bucket, sessions FROM analytics_session_durations ORDER BY ord")
    failed_by_hour = _rows(
        "SELECT hour, sum(failures) FROM analytics_failed_logins_hourly "
        "WHERE hour >= analytics_now() - interval '24 hours' GROUP BY hour ORDER BY hour"
    )
    return Overview(
        live=live_figures(),
        today=daily[-1] if daily else None,
        api_calls_24h=int(calls_24h),
        failed_logins_1h=failed_1h,
        daily=daily,
        sessions_by_status=by_status,
        durations=durations,
        failed_by_hour=failed_by_hour,
        top_power_users=list(power_users(window="24h")[:5]),
        newest_idle_users=list(newest_idle_users()),
        attacking_ips=list(attacking_ips()),
        freshness=freshness(),
        today_partial=bool(daily) and daily[-1].day == clock.to_datetime(clock.now()).date(),
    )


# --- live sessions (Redis) -------------------------------------------------------------------


@dataclass
class LiveRow:
    session: livesessions.LiveSession
    username: str
    status: str


@dataclass
class LivePage:
    rows: list[LiveRow]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


STATUS_BOUNDS = ("active_now", "recent", "idle")


def _score_range(status: str | None, now: float) -> tuple[str, str]:
    conf = get_settings()
    active, recent = now - conf.ACTIVE_WINDOW, now - conf.RECENT_WINDOW
    return {
        None: ("+inf", "-inf"),
        "active_now": ("+inf", f"{active}"),
        "recent": (f"({active}", f"{recent}"),
        "idle": (f"({recent}", "-inf"),
    }[status]


def live_sessions_page(
    *,
    status: str | None = None,
    user_id: int | None = None,
    page: int = 1,
    per_page: int = 50,
    oldest_first: bool = False,
    offset: int | None = None,
) -> LivePage:
    """Live sessions by last activity (latest first, or oldest first): index range pages,
    never a scan."""
    client = get_redis()
    now = clock.now()
    if user_id is not None:
        sids = livesessions.user_sids(user_id)
        sessions = sorted(
            livesessions.get_many(sids), key=lambda s: s.last_active, reverse=not oldest_first
        )
        sessions = [
            s
            for s in sessions
            if not s.is_ended and (status is None or session_status(s.last_active, now) == status)
        ]
        total = len(sessions)
        start = (page - 1) * per_page if offset is None else offset
        sessions = sessions[start : start + per_page]
    else:
        high, low = _score_range(status, now)
        total = client.zcount(keys.active_index(), low, high)
        start = (page - 1) * per_page if offset is None else offset
        found = (
            client.zrangebyscore(keys.active_index(), low, high, start=start, num=per_page)
            if oldest_first
            else client.zrevrangebyscore(keys.active_index(), high, low, start=start, num=per_page)
        )
        sids = [sid.decode() for sid in found]
        sessions = livesessions.get_many(sids)
    names = dict(
        get_user_model()
        .objects.filter(pk__in={s.user_id for s in sessions})
        .values_list("pk", "username")
    )
    rows = [
        LiveRow(s, names.get(s.user_id, f"#{s.user_id}"), session_status(s.last_active, now))
        for s in sessions
    ]
    return LivePage(rows, total, page, per_page)


# --- security --------------------------------------------------------------------------------


@dataclass
class Anomaly:
    """A session used from two distant clients at once (a `session_anomaly` event)."""

    occurred_at: datetime
    user_id: int | None
    username: str
    sid: str
    earlier_network: str  # where the session was in use until then
    ip: str  # the client that appeared
    user_agent: str
    login_ip: str
    login_user_agent: str
    end_reason: str  # the session's, as last synced ('' while open)


ANOMALIES = """
SELECT e.occurred_at, e.user_id, coalesce(u.username, ''), e.session_id, e.reason,
       coalesce(host(e.ip), ''), e.user_agent, coalesce(host(s.ip), ''),
       coalesce(s.user_agent, ''), coalesce(s.end_reason, '')
FROM audit_event e
LEFT JOIN accounts_user u ON u.id = e.user_id
LEFT JOIN audit_session s ON s.sid = e.session_id
WHERE e.event_type = 'session_anomaly'
  AND e.occurred_at >= analytics_now() - make_interval(hours => %s)
ORDER BY e.occurred_at DESC
LIMIT %s
"""


@dataclass
class Security:
    failed_by_hour: list[tuple[datetime, str, int]]
    suspicious: list[tuple]
    lockouts: list[throttling.Lockout]
    lockouts_available: bool
    anomalies: list[Anomaly] = field(default_factory=list)


def security(*, hours: int = 24, top: int = 20) -> Security:
    failed = _rows(
        "SELECT hour, reason, failures FROM analytics_failed_logins_hourly "
        "WHERE hour >= analytics_now() - make_interval(hours => %s) ORDER BY hour, reason",
        [hours],
    )
    suspicious = _rows(
        "SELECT host(ip), user_agent, attempts, usernames_tried, first_seen, last_seen "
        "FROM analytics_suspicious_ips ORDER BY usernames_tried DESC, attempts DESC LIMIT %s",
        [top],
    )
    anomalies = [Anomaly(*row) for row in _rows(ANOMALIES, [hours, top])]
    try:
        lockouts, available = throttling.lockouts_current(now=clock.now()), True
    except REDIS_UNAVAILABLE:
        lockouts, available = [], False
    return Security(failed, suspicious, lockouts, available, anomalies)


# --- one user --------------------------------------------------------------------------------


@dataclass
class TimelineEntry:
    at: datetime
    kind: str
    detail: str
    ip: str = ""
    user_agent: str = ""
    alarming: bool = False


@dataclass
class UserDetail:
    user: object
    activity: UserActivity | None
    live: list[LiveRow]
    live_available: bool
    sessions: list[AuditSession]
    timeline: list[TimelineEntry]
    daily_calls: list[tuple[date, int]]

    @property
    def anomalies(self) -> list[TimelineEntry]:
        return [entry for entry in self.timeline if entry.alarming]


def _event_detail(event: AuditEvent, actors: dict) -> str:
    if event.event_type == EventType.SESSION_ANOMALY:
        return (
            f"session {event.session_id} in use from {event.reason} until then, "
            "now also from this client"
        )
    if event.actor_id:
        return f"{event.reason} by {actors.get(event.actor_id)}"
    return event.reason


def user_detail(*, user_id: int, limit: int = 200) -> UserDetail:
    """One user's figures, live sessions and a single timeline of sessions and events."""
    user = get_user_model().objects.get(pk=user_id)
    activity = UserActivity.objects.filter(user_id=user_id).first()
    sessions = list(AuditSession.objects.filter(user_id=user_id).order_by("-started_at")[:limit])
    events = list(
        AuditEvent.objects.filter(user_id=user_id)
        .union(AuditEvent.objects.filter(user__isnull=True, username__iexact=user.username))
        .order_by("-occurred_at")[:limit]
    )
    daily_calls = _rows(
        "SELECT day, api_calls FROM analytics_user_day WHERE user_id = %s "
        "AND day >= analytics_utc_today() - 29 ORDER BY day",
        [user_id],
    )
    try:
        live = live_sessions_page(user_id=user_id, per_page=100).rows
        live_available = True
    except REDIS_UNAVAILABLE:
        live, live_available = [], False
    # Sessions tell their own start and end (with their call counts); the events add the rest:
    # refreshes, failed logins, lock-outs, and who revoked a session.
    redundant = {EventType.LOGIN, EventType.LOGOUT, EventType.SESSION_EXPIRED}
    actors = dict(
        get_user_model()
        .objects.filter(pk__in={e.actor_id for e in events if e.actor_id})
        .values_list("pk", "username")
    )
    timeline = [
        TimelineEntry(
            e.occurred_at,
            e.get_event_type_display(),
            _event_detail(e, actors),
            str(e.ip or ""),
            e.user_agent,
            alarming=e.event_type == EventType.SESSION_ANOMALY,
        )
        for e in events
        if e.event_type not in redundant
    ]
    for s in sessions:
        timeline.append(
            TimelineEntry(
                s.started_at,
                "Session started",
                f"{s.api_call_count:,} API calls",
                str(s.ip or ""),
                s.user_agent,
            )
        )
        if s.ended_at:
            timeline.append(
                TimelineEntry(
                    s.ended_at,
                    "Session ended",
                    s.get_end_reason_display(),
                    str(s.ip or ""),
                    s.user_agent,
                )
            )
    timeline.sort(key=lambda entry: entry.at, reverse=True)
    return UserDetail(user, activity, live, live_available, sessions, timeline[:limit], daily_calls)
