"""Reads behind the admin's analytics pages: the SQL views (as Grafana reads them) and Redis.

Each function makes a fixed, small number of queries whatever the data size; the admin tests
assert those numbers.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, cast

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import connections
from django.db.models import F, QuerySet
from django.db.models.expressions import RawSQL

from accounts import livesessions, throttling
from accounts.events import EndReason, EventType, LockScope
from accounts.livesessions import SessionStatus
from audit.models import AuditEvent
from core import clock
from core.conf import get_settings
from core.redis import REDIS_UNAVAILABLE, get_redis
from core.rediskeys import keys
from core.replica import reports_db

from . import useragents
from .models import DailyRollup, IdleUser, PowerUser, UserActivity


def _rows(sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[tuple]:
    # Raw SQL bypasses the router: ask it where report reads go (the replica, if any).
    with connections[reports_db()].cursor() as cursor:
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
        for shard in keys.shards():
            pipe.zcount(keys.active_index(shard), now - get_settings().ACTIVE_WINDOW, "+inf")
            pipe.xrange(keys.events(shard), count=1)
            pipe.scard(keys.dirty(shard))
            pipe.scard(keys.dirty_inflight(shard))
        results = pipe.execute()
    except REDIS_UNAVAILABLE:
        return LiveFigures(available=False)
    # Summed over the shards; the lag is the oldest unsynced event's, of any shard.
    active = sum(results[0::4])
    oldest = [int(first[0][0].decode().split("-")[0]) for first in results[1::4] if first]
    backlog = sum(results[2::4]) + sum(results[3::4])
    lag = now - min(oldest) / 1000 if oldest else 0.0
    return LiveFigures(True, active, max(lag, 0.0), backlog)


@dataclass
class LiveTiles:
    """The overview's figures that move by the second, all read from Redis now (`as_of`).

    Calls and failed logins come from per-minute counters the tracking flush and the login
    failure script keep (core.rediskeys.per_minute): "API calls in the last 60 s" weighs
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
        for shard in keys.shards():
            pipe.zcount(keys.active_index(shard), now - get_settings().ACTIVE_WINDOW, "+inf")
            # One MGET per shard: a cluster's MGET must stay in one slot.
            pipe.mget([keys.per_minute("api_calls", minute - n, shard) for n in (0, 1)])
        # Failed logins are counted by the login gate, in shard 0 (core.rediskeys).
        pipe.mget([keys.per_minute("login_failures", minute - n) for n in range(60)])
        results = pipe.execute()
        lockouts = throttling.lockouts_current(now=now)
    except REDIS_UNAVAILABLE:
        return LiveTiles(available=False, as_of=as_of)
    active = sum(results[0:-1:2])
    failures = results[-1]
    this_minute = sum(int(calls[0] or 0) for calls in results[1:-1:2])
    last_minute = sum(int(calls[1] or 0) for calls in results[1:-1:2])
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
    audit tables (plain SQL views over them); `rolled_up_at`, the last refresh job (the
    per-user windows' roll, today's daily row, the one materialized view left). None when
    unknown (never yet, or Redis away)."""

    synced_at: datetime | None
    rolled_up_at: datetime | None


def freshness() -> Freshness:
    try:
        synced, rolled = get_redis().hmget(
            keys.sync_state(), "last_success", "rollups_refreshed_at"
        )
    except REDIS_UNAVAILABLE:
        return Freshness(None, None)

    def at(value: bytes | str | None) -> datetime | None:
        return clock.to_datetime(float(value)) if value else None

    return Freshness(at(synced), at(rolled))


# --- the reports' filters: one definition, for the admin's list filters and the API ----------

POWER_USER_WINDOWS = ("24h", "7d", "30d")
IDLE_FOR = ("7", "30", "90", "never")


def power_users(
    *, window: str = "24h", queryset: QuerySet[PowerUser] | None = None
) -> QuerySet[PowerUser]:
    """Top users by API calls in a window (the power users report), biggest first."""
    queryset = PowerUser.objects.all() if queryset is None else queryset
    return queryset.filter(window=window).order_by("-api_calls", "user_id")


# The idle users report's order: never active first, then the longest idle (the earliest last
# activity), which is the order of the index on analytics_user_stats (last_active NULLS FIRST,
# user_id): a page reads 50 index entries, never a sort of every user. It is the order of
# "-idle_days" refined within a day.
IDLE_ORDER = (F("last_active").asc(nulls_first=True), "user_id")


def idle_users(
    *, idle_for: str | None = None, queryset: QuerySet[IdleUser] | None = None
) -> QuerySet[IdleUser]:
    """Users idle for N days or more (never-active users included), or never active only,
    longest idle first."""
    queryset = IdleUser.objects.all() if queryset is None else queryset
    if idle_for == "never":
        queryset = queryset.filter(never_active=True)
    elif idle_for is not None:
        queryset = queryset.filter(idle_days__gte=int(idle_for)) | queryset.filter(
            never_active=True
        )
    return queryset.order_by(*IDLE_ORDER)


@dataclass(frozen=True)
class IdleCount:
    idle_users: int
    never_active: int


def idle_user_count() -> IdleCount:
    """How many active accounts are idle (never active included), without a scan of the users:
    the kept count of active accounts minus those active within the threshold."""
    [row] = _rows("SELECT idle_users, never_active FROM analytics_idle_user_count")
    return IdleCount(*row)


# The idle threshold as the views compute it.
IDLE_SINCE = "analytics_now() - make_interval(days => analytics_setting_value('idle_user_days', 7))"


def newest_idle_users(*, limit: int = 5) -> QuerySet[IdleUser]:
    """The users who went idle most recently: the latest last activity among idle users.

    Never-active users are left out here (they are in the idle users report): ranking them
    by the day they joined sorted every user (3.7 s at 1M users in bench_admin), where this
    reads the index on the last activity.
    """
    # The threshold repeated as a bound on last_active: the index's range then starts at the
    # newest idle user, where the view's "never active, or idle" alone is a filter that would
    # pass over every recently active user first.
    return IdleUser.objects.filter(
        never_active=False,
        last_active__lte=RawSQL(IDLE_SINCE, ()),  # noqa: S611 - a constant
    ).order_by(F("last_active").desc(nulls_last=True), "-user_id")[:limit]


def attacking_ips(*, minutes: int = 60, limit: int = 5) -> list["SuspiciousIp"]:
    """Suspicious IPs (last 24 h) with a failed login in the last `minutes` (synced events)."""
    since = clock.to_datetime(clock.now()) - timedelta(minutes=minutes)
    return suspicious_ips(hours=24, limit=limit, seen_since=since)


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
    [(calls_24h,)] = _rows(  # a range of the index on the 24 h figure: the users with calls
        "SELECT coalesce(sum(api_calls_24h), 0) FROM analytics_user_stats WHERE api_calls_24h > 0"
    )
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
    status: SessionStatus


@dataclass
class LivePage:
    rows: list[LiveRow]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def _score_range(status: str | None, now: float) -> tuple[str, str]:
    conf = get_settings()
    active, recent = now - conf.ACTIVE_WINDOW, now - conf.RECENT_WINDOW
    ranges: dict[str | None, tuple[str, str]] = {
        None: ("+inf", "-inf"),
        SessionStatus.ACTIVE_NOW: ("+inf", f"{active}"),
        SessionStatus.RECENT: (f"({active}", f"{recent}"),
        SessionStatus.INACTIVE: (f"({recent}", "-inf"),
    }
    return ranges[status]


def _live_page_sharded(
    client: Any, low: str, high: str, start: int, per_page: int, oldest_first: bool
) -> tuple[int, list[str], list[int]]:
    """A page of the live sessions of every shard: each shard's first `start + per_page` by
    activity, merged (a page deep in the list reads more; the first pages, the ones people
    read, cost one pipeline)."""
    pipe = client.pipeline(transaction=False)
    for shard in keys.shards():
        pipe.zcount(keys.active_index(shard), low, high)
        if oldest_first:
            pipe.zrangebyscore(
                keys.active_index(shard), low, high, start=0, num=start + per_page, withscores=True
            )
        else:
            pipe.zrevrangebyscore(
                keys.active_index(shard), high, low, start=0, num=start + per_page, withscores=True
            )
    results = pipe.execute()
    merged = [
        (score, sid.decode(), shard)
        for shard, rows in enumerate(results[1::2])
        for sid, score in rows
    ]
    merged.sort(key=lambda row: (row[0], row[1]), reverse=not oldest_first)
    page = merged[start : start + per_page]
    return sum(results[0::2]), [row[1] for row in page], [row[2] for row in page]


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
            livesessions.get_many(sids, keys.shard_of(user_id)),
            key=lambda s: s.last_active,
            reverse=not oldest_first,
        )
        sessions = [
            s
            for s in sessions
            if not s.is_ended
            and (status is None or livesessions.session_status(s.last_active, now) == status)
        ]
        total = len(sessions)
        start = (page - 1) * per_page if offset is None else offset
        sessions = sessions[start : start + per_page]
    else:
        high, low = _score_range(status, now)
        start = (page - 1) * per_page if offset is None else offset
        if keys.shard_count == 1:
            total = client.zcount(keys.active_index(), low, high)
            found = (
                client.zrangebyscore(keys.active_index(), low, high, start=start, num=per_page)
                if oldest_first
                else client.zrevrangebyscore(
                    keys.active_index(), high, low, start=start, num=per_page
                )
            )
            sids = [sid.decode() for sid in cast(list[bytes], found)]
            sessions = livesessions.get_many(sids)
        else:
            total, sids, shards = _live_page_sharded(
                client, low, high, start, per_page, oldest_first
            )
            sessions = livesessions.get_many(sids, shards)
    names = dict(
        get_user_model()
        .objects.filter(pk__in={s.user_id for s in sessions})
        .values_list("pk", "username")
    )
    rows = [
        LiveRow(
            s,
            names.get(s.user_id, f"#{s.user_id}"),
            livesessions.session_status(s.last_active, now),
        )
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


@dataclass(frozen=True)
class SuspiciousIp:
    ip: str
    user_agent_count: int
    user_agents: list[str]  # the first 10, alphabetically
    attempts: int
    usernames_tried: int
    first_seen: datetime
    last_seen: datetime


@dataclass(frozen=True)
class SuspiciousThreshold:
    min_failures: int
    min_usernames: int


def suspicious_threshold() -> SuspiciousThreshold:
    conf = get_settings()
    return SuspiciousThreshold(conf.SUSPICIOUS_IP_MIN_FAILURES, conf.SUSPICIOUS_IP_MIN_USERNAMES)


def suspicious_ips(
    *, hours: int = 24, limit: int = 20, offset: int = 0, seen_since: datetime | None = None
) -> list[SuspiciousIp]:
    """Addresses with failed logins in the last `hours` past the threshold (at least
    SUSPICIOUS_IP_MIN_FAILURES failures, or SUSPICIOUS_IP_MIN_USERNAMES distinct usernames),
    one row per address, the most usernames tried first: a credential stuffer tops a
    single account's guesser.

    The definition is the SQL function analytics_suspicious_ips_window (migration 0008), which
    the analytics_suspicious_ips view (Grafana, the changelist) reads for 24 hours.
    """
    threshold = suspicious_threshold()
    rows = _rows(
        "SELECT host(ip), user_agent_count, user_agents, attempts, usernames_tried, "
        "first_seen, last_seen FROM analytics_suspicious_ips_window(%s, %s, %s) "
        "WHERE %s::timestamptz IS NULL OR last_seen >= %s "
        "ORDER BY usernames_tried DESC, attempts DESC, last_seen DESC, ip LIMIT %s OFFSET %s",
        [
            hours,
            threshold.min_failures,
            threshold.min_usernames,
            seen_since,
            seen_since,
            limit,
            offset,
        ],
    )
    return [SuspiciousIp(*row) for row in rows]


@dataclass
class Security:
    failed_by_hour: list[tuple[datetime, str, int]]
    suspicious: list[SuspiciousIp]
    lockouts: list[throttling.Lockout]
    lockouts_available: bool
    anomalies: list[Anomaly] = field(default_factory=list)


def security(*, hours: int = 24, top: int = 20) -> Security:
    failed = _rows(
        "SELECT hour, reason, failures FROM analytics_failed_logins_hourly "
        "WHERE hour >= analytics_now() - make_interval(hours => %s) ORDER BY hour, reason",
        [hours],
    )
    suspicious = suspicious_ips(hours=hours, limit=top)
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
class TimelinePage:
    entries: list[TimelineEntry]
    page: int
    per_page: int
    has_next: bool


@dataclass
class FailedLoginSource:
    ip: str
    attempts: int
    last_at: datetime
    reasons: list[str]
    user_agents: list[str]


@dataclass
class AccountFailures:
    """Failed logins naming the account (case-folded, as the login gate counts them)."""

    last_24h: int
    last_7d: int
    sources: list[FailedLoginSource]  # the last 7 days, by address, most attempts first


@dataclass
class DeviceRow:
    device: useragents.Device
    sessions: int
    last_active: float
    ips: list[str]


@dataclass
class UserDetail:
    user: AbstractBaseUser
    activity: UserActivity | None
    live: list[LiveRow]
    live_available: bool
    timeline: TimelinePage
    daily_calls: list[tuple[date, int]]
    failures: AccountFailures
    anomalies: list[TimelineEntry]
    calls_per_minute: list[tuple[int, int]]  # (minute epoch, calls), oldest first, live

    @property
    def devices(self) -> list[DeviceRow]:
        """The user's live sessions grouped by parsed User-Agent, most sessions first."""
        rows: dict[useragents.Device, DeviceRow] = {}
        for row in self.live:
            device = useragents.parse(row.session.user_agent)
            entry = rows.setdefault(device, DeviceRow(device, 0, 0.0, []))
            entry.sessions += 1
            entry.last_active = max(entry.last_active, row.session.last_active)
            if row.session.ip and row.session.ip not in entry.ips:
                entry.ips.append(row.session.ip)
        return sorted(rows.values(), key=lambda r: (-r.sessions, -r.last_active))


# Sessions tell their own start and end (with their call counts); the events add the rest:
# refreshes, failed logins, lock-outs, and who revoked a session.
TIMELINE_REDUNDANT = (EventType.LOGIN, EventType.LOGOUT, EventType.SESSION_EXPIRED)

# One page of a user's timeline, newest first. Each branch is cut to the page's end before the
# merge, so a page costs the same whatever the user's history (deep pages excepted): sessions
# through (user, started_at), events through (user, occurred_at) and upper(username).
TIMELINE = """
(SELECT started_at AS at, 'started' AS source, '' AS event_type, api_call_count AS calls,
        '' AS reason, host(ip) AS ip, user_agent, sid AS session_id, NULL::integer AS actor_id
 FROM audit_session WHERE user_id = %(user_id)s ORDER BY started_at DESC LIMIT %(end)s)
UNION ALL
(SELECT ended_at, 'ended', '', api_call_count, end_reason, host(ip), user_agent, sid, NULL
 FROM audit_session WHERE user_id = %(user_id)s AND ended_at IS NOT NULL
 ORDER BY ended_at DESC LIMIT %(end)s)
UNION ALL
(SELECT occurred_at, 'event', event_type, NULL, reason, host(ip), user_agent, session_id,
        actor_id
 FROM audit_event WHERE user_id = %(user_id)s AND NOT event_type = ANY(%(redundant)s)
 ORDER BY occurred_at DESC LIMIT %(end)s)
UNION ALL
(SELECT occurred_at, 'event', event_type, NULL, reason, host(ip), user_agent, session_id,
        actor_id
 FROM audit_event WHERE user_id IS NULL AND upper(username) = upper(%(username)s)
   AND NOT event_type = ANY(%(redundant)s)
 ORDER BY occurred_at DESC LIMIT %(end)s)
ORDER BY at DESC, source, session_id
LIMIT %(limit)s OFFSET %(offset)s
"""

ACCOUNT_FAILURES = """
SELECT host(ip), count(*)::integer, max(occurred_at),
       array_agg(DISTINCT reason ORDER BY reason),
       (array_agg(DISTINCT user_agent ORDER BY user_agent))[1:5],
       sum(count(*)) OVER ()::integer,
       sum(count(*) FILTER (WHERE occurred_at >= analytics_now() - interval '24 hours'))
           OVER ()::integer
FROM audit_event
WHERE event_type = 'login_failed' AND upper(username) = upper(%s)
  AND occurred_at >= analytics_now() - interval '7 days'
GROUP BY ip
ORDER BY 2 DESC, 3 DESC
"""


def _event_detail(
    event_type: str, reason: str, session_id: str, actor_id: int | None, actors: dict
) -> str:
    if event_type == EventType.SESSION_ANOMALY:
        return f"session {session_id} in use from {reason} until then, now also from this client"
    if actor_id:
        return f"{reason} by {actors.get(actor_id)}"
    return reason


def user_timeline(
    *, user_id: int, username: str, page: int = 1, per_page: int = 50
) -> TimelinePage:
    """One page of the user's sessions and events, newest first (2 queries at most)."""
    offset = (page - 1) * per_page
    rows = _rows(
        TIMELINE,
        {
            "user_id": user_id,
            "username": username,
            "redundant": [str(t) for t in TIMELINE_REDUNDANT],
            "end": offset + per_page + 1,
            "limit": per_page + 1,
            "offset": offset,
        },
    )
    actor_ids = {row[8] for row in rows if row[8]}
    actors = (
        dict(get_user_model().objects.filter(pk__in=actor_ids).values_list("pk", "username"))
        if actor_ids
        else {}
    )
    entries = []
    for at, source, event_type, calls, reason, ip, agent, session_id, actor_id in rows[:per_page]:
        if source == "started":
            entries.append(
                TimelineEntry(at, "Session started", f"{calls:,} API calls", ip or "", agent)
            )
        elif source == "ended":
            label = EndReason(reason).label if reason in EndReason.values else reason
            entries.append(TimelineEntry(at, "Session ended", label, ip or "", agent))
        else:
            kind = EventType(event_type).label if event_type in EventType.values else event_type
            entries.append(
                TimelineEntry(
                    at,
                    kind,
                    _event_detail(event_type, reason, session_id, actor_id, actors),
                    ip or "",
                    agent,
                    alarming=event_type == EventType.SESSION_ANOMALY,
                )
            )
    return TimelinePage(entries, page, per_page, has_next=len(rows) > per_page)


def account_failures(*, username: str) -> AccountFailures:
    """Failed logins naming this username in the last 7 days, by address (1 query)."""
    rows = _rows(ACCOUNT_FAILURES, [username])
    sources = [
        FailedLoginSource(ip or "", n, last, reasons, agents)
        for ip, n, last, reasons, agents, _, _ in rows
    ]
    last_7d, last_24h = (rows[0][5], rows[0][6]) if rows else (0, 0)
    return AccountFailures(last_24h, last_7d, sources)


def user_anomalies(*, user_id: int, limit: int = 20) -> list[TimelineEntry]:
    """The user's sessions found used from two places at once, newest first (1 query)."""
    events = AuditEvent.objects.filter(
        user_id=user_id, event_type=EventType.SESSION_ANOMALY
    ).order_by("-occurred_at")[:limit]
    return [
        TimelineEntry(
            e.occurred_at,
            e.get_event_type_display(),
            _event_detail(e.event_type, e.reason, e.session_id, None, {}),
            str(e.ip or ""),
            e.user_agent,
            alarming=True,
        )
        for e in events
    ]


def user_detail(*, user_id: int, page: int = 1, per_page: int = 50) -> UserDetail:
    """One user's figures, live sessions and devices, calls per minute (Redis), failed logins
    against the account, and one page of a single timeline of sessions and events."""
    user = get_user_model().objects.get(pk=user_id)
    activity = UserActivity.objects.filter(user_id=user_id).first()
    daily_calls = _rows(
        "SELECT day, api_calls FROM analytics_user_day WHERE user_id = %s "
        "AND day >= analytics_utc_today() - 29 ORDER BY day",
        [user_id],
    )
    try:
        live = live_sessions_page(user_id=user_id, per_page=100).rows
        per_minute = livesessions.calls_per_minute(user_id=user_id, now=clock.now())
        live_available = True
    except REDIS_UNAVAILABLE:
        live, per_minute, live_available = [], [], False
    return UserDetail(
        user=user,
        activity=activity,
        live=live,
        live_available=live_available,
        timeline=user_timeline(
            user_id=user_id, username=user.get_username(), page=page, per_page=per_page
        ),
        daily_calls=daily_calls,
        failures=account_failures(username=user.get_username()),
        anomalies=user_anomalies(user_id=user_id),
        calls_per_minute=per_minute,
    )
