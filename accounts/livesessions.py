"""Live sessions in Redis: the storage layer under accounts.services and accounts.tracking.

Layout (all keys under the configured prefix, see core.rediskeys):

* ``s:<sid>``         hash — u (user id, set once: a session belongs to one user), st
                      (started), la (last active), n (API calls), ip, ua,
                      h:<hour epoch> (calls in that hour), end, why (end reason)
* ``idx:last``        sorted set of live sids by last activity — ZCOUNT gives active sessions
* ``idx:started``     sorted set of live sids by start — the absolute-timeout job reads it
* ``idx:ended``       sorted set of recently ended sids by end time — every process reloads it
* ``u:<user id>``     set of the user's live sids (at most SESSION_LIMIT_PER_USER: a login
                      beyond it ends the oldest, in the same script)
* ``cpm:<user id>``   hash — the user's API calls per minute over the last hour: a ring of
                      60 slots (minute index mod 60 → '<minute epoch>:<calls>'), written
                      by the tracking flush, expiring an hour after its newest minute
                      (the seed's RedisTimeSeries `TS.ADD` would need a module this Redis
                      does not load; a fixed ring in a plain hash needs none)
* ``dirty``           set of sids changed since the last sync
* ``events``          the event stream (bounded)

Counting never touches the keyspace (no KEYS, no SCAN): the indexes answer every question.
Multi-key scripts build some key names inside Lua; on Redis Cluster the keys would need one
hash tag (see README, "Scaling").
"""

import re
import secrets
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, cast

from redis.commands.core import Script

from core import lua
from core.conf import get_settings
from core.redis import as_text, get_redis
from core.rediskeys import keys

from . import events
from .events import EndReason

# session_duration_seconds buckets (the seed's), in seconds, each an inclusive upper bound: the
# end script's histogram, the collector and the SQL duration rollup (tested against this).
DURATION_BUCKETS = (60, 300, 900, 3600, 86400)


class SessionStatus(StrEnum):
    """How recently a live session was used, by the configured windows; the SQL function
    analytics_session_status() says the same (tested against `session_status`).

    The third status is "inactive", never "idle": "idle" names only the idle-users report
    (accounts without activity for days) and the idle timeout that ends a session."""

    ACTIVE_NOW = "active_now"
    RECENT = "recent"
    INACTIVE = "inactive"

    @property
    def label(self) -> str:
        """How people read it: "active now", "recent", "inactive"."""
        return self.value.replace("_", " ")

    @classmethod
    def choices(cls) -> list[tuple[str, str]]:
        """(value, label) pairs, for forms, filters and the API's schema."""
        return [(status.value, status.label) for status in cls]


def session_status(last_active: float, now: float) -> SessionStatus:
    conf = get_settings()
    age = now - last_active
    if age < conf.ACTIVE_WINDOW:
        return SessionStatus.ACTIVE_NOW
    if age < conf.RECENT_WINDOW:
        return SessionStatus.RECENT
    return SessionStatus.INACTIVE


LUA_DIR = Path(__file__).parent / "lua"
# Scripts that end sessions share one definition of how (end_session.lua), put in front of them.
INCLUDES = {"session_end": ("end_session",), "session_start": ("end_session",)}
SID_TIME_DIGITS = 11
_SID_TIME = re.compile(rf"[0-9a-f]{{{SID_TIME_DIGITS}}}")


class SessionIdTaken(Exception):
    """A new session's id already belongs to another user's session (never in practice)."""


def script_source(name: str) -> str:
    return lua.source(LUA_DIR, name, INCLUDES.get(name, ()))


def script(name: str) -> Script:
    """A registered Lua script of the live-session record (see core.lua)."""
    return lua.script(LUA_DIR, name, INCLUDES.get(name, ()))


def new_sid() -> str:
    """Unguessable, and ordered by creation time: 11 hex digits of milliseconds, then 16 random
    ones. Ordered ids land at the right edge of the audit table's primary-key index, so the
    sync's inserts touch a few index pages instead of a random page per session."""
    return f"{now_ms():0{SID_TIME_DIGITS}x}{secrets.token_hex(8)}"


def now_ms() -> int:
    """Wall-clock milliseconds: the clock session ids carry their creation time in."""
    return time.time_ns() // 1_000_000


def sid_created_ms(sid: str) -> int:
    """When a session was created, from its id (0 for an id of another form: oldest of all)."""
    head = sid[:SID_TIME_DIGITS]
    return int(head, 16) if _SID_TIME.fullmatch(head) else 0


def hour_of(ts: float) -> int:
    return int(ts // 3600 * 3600)


def minute_of(ts: float) -> int:
    return int(ts // 60 * 60)


def calls_per_minute(*, user_id: int, now: float, minutes: int = 60) -> list[tuple[int, int]]:
    """A user's API calls in each of the last `minutes` minutes, this (partial) one last, as
    (minute start epoch, calls); kept by the tracking flush (accounts/lua/track_flush.lua).
    Calls still in a web process's memory (at most one flush interval) are not in yet."""
    raw = get_redis().hgetall(keys.user_calls_per_minute(user_id))
    counts = {}
    for value in raw.values():
        minute, _, calls = as_text(value).partition(":")
        counts[int(minute)] = int(calls)
    current = minute_of(now)
    return [
        (start, counts.get(start, 0))
        for start in range(current - (minutes - 1) * 60, current + 1, 60)
    ]


@dataclass(frozen=True, slots=True)
class LiveSession:
    sid: str
    user_id: int
    started_at: float
    last_active: float
    api_call_count: int
    ip: str
    user_agent: str
    ended_at: float | None
    end_reason: str

    @property
    def is_ended(self) -> bool:
        return self.ended_at is not None


SESSION_FIELDS = ("u", "st", "la", "n", "ip", "ua", "end", "why")


def parse_session(sid: str, values: list) -> LiveSession | None:
    """A session from HMGET of SESSION_FIELDS; None when the hash does not exist."""
    if values[0] is None:
        return None
    uid, st, la, n, ip, ua, end, why = values
    return LiveSession(
        sid=sid,
        user_id=int(uid),
        started_at=float(st),
        last_active=float(la),
        api_call_count=int(n or 0),
        ip=(ip or b"").decode(),
        user_agent=(ua or b"").decode("utf-8", "replace"),
        ended_at=float(end) if end is not None else None,
        end_reason=(why or b"").decode(),
    )


def start_args(
    *, sid: str, user_id: int, started_at: float, ip: str, user_agent: str, username: str
) -> tuple[list, list]:
    event = events.login_payload(
        user_id=user_id,
        username=username,
        ip=ip,
        user_agent=user_agent,
        sid=sid,
        occurred_at=started_at,
    )
    conf = get_settings()
    # Completed by the start script for each session the limit ends (its sid, uid, ts).
    limit_event = events.session_ended_payload(sid="", reason=EndReason.SESSION_LIMIT)
    script_keys = [
        keys.session(sid),
        keys.active_index(),
        keys.started_index(),
        keys.user_sessions(user_id),
        keys.dirty(),
        keys.events(),
        keys.stats(),
        keys.ended_index(),
        keys.duration_histogram(),
    ]
    args = [
        sid,
        user_id,
        repr(started_at),
        ip,
        user_agent,
        conf.EVENT_STREAM_MAXLEN,
        event,
        conf.SESSION_LIMIT_PER_USER,
        keys.session_prefix(),
        keys.user_sessions(""),
        keys.revocations_channel(),
        limit_event,
        *DURATION_BUCKETS,
    ]
    return script_keys, args


def start(**kwargs: Any) -> list[str]:
    """Open a session; returns the sids of the user's oldest sessions the limit ended."""
    script_keys, args = start_args(**kwargs)
    opened, evicted = script("session_start")(keys=script_keys, args=args)
    if not opened:
        raise SessionIdTaken(kwargs["sid"])
    return [sid.decode() for sid in evicted]


def end(
    *,
    sid: str,
    reason: EndReason,
    ended_at: float,
    actor_id: int | None = None,
    idle_timeout: int | None = None,
    client: Any = None,
) -> Any:
    """End one session exactly once. Returns the script's answer (1 ended now, 0 already,
    -1 unknown, 2 not idle after all). With ``client`` a pipeline, queues instead."""
    event = events.session_ended_payload(sid=sid, reason=reason, actor_id=actor_id)
    script_keys = [
        keys.session(sid),
        keys.active_index(),
        keys.started_index(),
        keys.ended_index(),
        keys.dirty(),
        keys.events(),
        keys.stats(),
        keys.duration_histogram(),
    ]
    args = [
        sid,
        repr(ended_at),
        str(reason),
        keys.user_sessions(""),
        get_settings().EVENT_STREAM_MAXLEN,
        keys.revocations_channel(),
        event,
        "" if idle_timeout is None else idle_timeout,
        repr(ended_at),
        *DURATION_BUCKETS,
    ]
    return script("session_end")(keys=script_keys, args=args, client=client)


def get(sid: str) -> LiveSession | None:
    return parse_session(sid, get_redis().hmget(keys.session(sid), SESSION_FIELDS))


def get_many(sids: list[str]) -> list[LiveSession]:
    if not sids:
        return []
    pipe = get_redis().pipeline(transaction=False)
    for sid in sids:
        pipe.hmget(keys.session(sid), SESSION_FIELDS)
    found = (parse_session(sid, values) for sid, values in zip(sids, pipe.execute(), strict=True))
    return [session for session in found if session is not None]


def user_sids(user_id: int) -> list[str]:
    return sorted(as_text(member) for member in get_redis().smembers(keys.user_sessions(user_id)))


def recently_ended(since: float) -> dict[str, float]:
    """Sids ended since ``since`` → end time: what every process must refuse."""
    rows = cast(
        list[tuple[bytes, float]],
        get_redis().zrangebyscore(keys.ended_index(), since, "+inf", withscores=True),
    )
    return {as_text(sid): score for sid, score in rows}


def count_active(since: float) -> int:
    return get_redis().zcount(keys.active_index(), since, "+inf")
