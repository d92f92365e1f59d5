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

Every key above exists once per virtual shard (core.rediskeys): a user's sessions, their set
and their calls per minute live in shard `user id % REDIS_SHARDS`, under that shard's hash
tag, with the shard's own indexes, dirty sets and event stream. So each script touches one
Redis Cluster slot, also for the key names it builds from the prefixes it is given, and the
session limit stays atomic. An operation on one session names its shard (`shard`, from the
user id the token carries); figures over all sessions are summed over the shards.
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
    shard = keys.shard_of(user_id)
    # Completed by the start script for each session the limit ends (its sid, uid, ts).
    limit_event = events.session_ended_payload(sid="", reason=EndReason.SESSION_LIMIT)
    script_keys = [
        keys.session(sid, shard),
        keys.active_index(shard),
        keys.started_index(shard),
        keys.user_sessions(user_id),
        keys.dirty(shard),
        keys.events(shard),
        keys.stats(shard),
        keys.ended_index(shard),
        keys.duration_histogram(shard),
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
        keys.session_prefix(shard),
        keys.user_sessions_prefix(shard),
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
    shard: int = 0,
) -> Any:
    """End one session (of `shard`) exactly once. Returns the script's answer (1 ended now,
    0 already, -1 unknown, 2 not idle after all)."""
    called, script_keys, args = end_call(
        sid=sid,
        reason=reason,
        ended_at=ended_at,
        actor_id=actor_id,
        idle_timeout=idle_timeout,
        shard=shard,
    )
    return called(keys=script_keys, args=args)


def end_call(
    *,
    sid: str,
    reason: EndReason,
    ended_at: float,
    actor_id: int | None = None,
    idle_timeout: int | None = None,
    shard: int = 0,
) -> lua.Call:
    """The end of one session as a script call, for core.lua.run (many in one round trip)."""
    event = events.session_ended_payload(sid=sid, reason=reason, actor_id=actor_id)
    script_keys = [
        keys.session(sid, shard),
        keys.active_index(shard),
        keys.started_index(shard),
        keys.ended_index(shard),
        keys.dirty(shard),
        keys.events(shard),
        keys.stats(shard),
        keys.duration_histogram(shard),
    ]
    args = [
        sid,
        repr(ended_at),
        str(reason),
        keys.user_sessions_prefix(shard),
        get_settings().EVENT_STREAM_MAXLEN,
        keys.revocations_channel(),
        event,
        "" if idle_timeout is None else idle_timeout,
        repr(ended_at),
        *DURATION_BUCKETS,
    ]
    return script("session_end"), script_keys, args


def get(sid: str, shard: int = 0) -> LiveSession | None:
    return parse_session(sid, get_redis().hmget(keys.session(sid, shard), SESSION_FIELDS))


def locate(sid: str) -> int | None:
    """The shard holding a session, for a caller that has only its id (an admin's list of
    sids): one EXISTS per shard, never a scan. None when no shard has it."""
    if keys.shard_count == 1:
        return 0
    pipe = get_redis().pipeline(transaction=False)
    for shard in keys.shards():
        pipe.exists(keys.session(sid, shard))
    return next((shard for shard, found in enumerate(pipe.execute()) if found), None)


def shard_for(sid: str, user_id: int | None = None) -> int:
    """The shard of a session: its user's when known, else where it is found (shard 0 when no
    shard has it: the scripts then answer "unknown")."""
    if user_id is not None:
        return keys.shard_of(user_id)
    return locate(sid) or 0


def get_many(sids: list[str], shards: int | list[int] = 0) -> list[LiveSession]:
    """Sessions by id, all of one shard or each of its own (`shards` a list as long)."""
    if not sids:
        return []
    of = shards if isinstance(shards, list) else [shards] * len(sids)
    pipe = get_redis().pipeline(transaction=False)
    for sid, shard in zip(sids, of, strict=True):
        pipe.hmget(keys.session(sid, shard), SESSION_FIELDS)
    found = (parse_session(sid, values) for sid, values in zip(sids, pipe.execute(), strict=True))
    return [session for session in found if session is not None]


def user_sids(user_id: int) -> list[str]:
    return sorted(as_text(member) for member in get_redis().smembers(keys.user_sessions(user_id)))


def recently_ended(since: float) -> dict[str, float]:
    """Sids ended since ``since`` → end time, in every shard: what every process must refuse."""
    pipe = get_redis().pipeline(transaction=False)
    for shard in keys.shards():
        pipe.zrangebyscore(keys.ended_index(shard), since, "+inf", withscores=True)
    ended: dict[str, float] = {}
    for rows in cast(list[list[tuple[bytes, float]]], pipe.execute()):
        ended.update((as_text(sid), score) for sid, score in rows)
    return ended


def count_active(since: float) -> int:
    """Sessions active since ``since``, summed over the shards."""
    pipe = get_redis().pipeline(transaction=False)
    for shard in keys.shards():
        pipe.zcount(keys.active_index(shard), since, "+inf")
    return sum(pipe.execute())
