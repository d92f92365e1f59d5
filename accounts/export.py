"""The live-session record and the event stream as the audit trail takes them.

accounts owns what a session's hash holds and what an event carries. The audit sync
(audit/sync.py) claims the changed sessions here, receives them already rendered as rows of
SESSION_STAGE_COLUMNS (PostgreSQL COPY text, by accounts/lua/read_sessions.lua), and each event
as a row of EVENT_STAGE_COLUMNS (`event_row`); after its commit it acknowledges them here. It
never reads a session's hash fields or an event's JSON keys itself.
"""

import ipaddress
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from redis.commands.core import Script

from core import lua
from core.conf import get_settings
from core.redis import get_redis
from core.rediskeys import keys

from .events import MAX_USER_AGENT, MAX_USERNAME, EventType
from .livesessions import LUA_DIR

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Times accepted, as read_sessions.lua does: from 2000 to a day ahead of this clock.
EARLIEST = 946_684_800
FUTURE_SLACK = 86_400

# The columns, in order, of a session row as read_sessions.lua renders it.
SESSION_STAGE_COLUMNS = (
    "sid text, user_id bigint, ip text, user_agent text, started double precision, "
    "last_active double precision, ended double precision, end_reason text, "
    "api_call_count bigint, hourly_calls jsonb, generation bigint"
)
# The columns, in order, of an event row as `event_row` makes it (binary COPY types below).
EVENT_STAGE_COLUMNS = (
    "stream_id text, event_type text, user_id bigint, username text, ip inet, user_agent text, "
    "session_id text, reason text, actor_id bigint, occurred_at timestamptz"
)
EVENT_COLUMNS = (
    "stream_id, event_type, user_id, username, ip, user_agent, session_id, reason, actor_id, "
    "occurred_at"
)
EVENT_TYPES = [
    "text",
    "text",
    "int8",
    "text",
    "inet",
    "text",
    "text",
    "text",
    "int8",
    "timestamptz",
]


class RowRefused(ValueError):
    """A row the sync will not write; the message is a fixed phrase, never the value."""


def _script(name: str) -> Script:
    return lua.script(LUA_DIR, name)


# --- Sessions --------------------------------------------------------------------------------


@dataclass(slots=True)
class SessionBatch:
    """Sessions as COPY text lines (one per session, in the chunks Redis returned them), their
    sids, which have ended, which the reader refused (sid, problem), and the key prefix they
    were read under."""

    chunks: list[bytes]
    sids: list[bytes]
    ended_sids: list[bytes]
    problems: list[tuple[bytes, str]] = field(default_factory=list)
    prefix: str = ""

    @classmethod
    def from_reply(cls, reply: list, prefix: str) -> "SessionBatch":
        copy_text, ended, refused = reply[1], reply[2], reply[3]
        sids = [line.partition(b"\t")[0] for line in copy_text.splitlines()]
        problems = [(refused[i], refused[i + 1].decode()) for i in range(0, len(refused), 2)]
        return cls([copy_text] if copy_text else [], sids, list(ended), problems, prefix)

    @property
    def count(self) -> int:
        return len(self.sids) + len(self.problems)

    @property
    def distinct(self) -> bool:
        return len(set(self.sids)) == len(self.sids)

    def extend(self, other: "SessionBatch") -> None:
        self.chunks.extend(other.chunks)
        self.sids.extend(other.sids)
        self.ended_sids.extend(other.ended_sids)
        self.problems.extend(other.problems)


def changed_claim(shard: int = 0) -> int:
    """Move the sessions of a shard changed since the last run into its in-flight set (a
    crashed run's in-flight set is kept and finished first); returns how many are in flight."""
    return _script("claim_dirty")(keys=[keys.dirty(shard), keys.dirty_inflight(shard)])


def changed_sessions(
    batch_size: int, *, inflight: str | None = None, prefix: str | None = None, shard: int = 0
) -> Iterator[SessionBatch]:
    """A shard's in-flight sessions, in batches of COPY text (SESSION_STAGE_COLUMNS), read
    with one script call each; `inflight` and `prefix` name another set and key prefix (the
    quarantine's retries)."""
    reader = _script("read_sessions")
    inflight = inflight or keys.dirty_inflight(shard)
    prefix = prefix or keys.session_prefix(shard)
    cursor = "0"
    while True:
        reply = reader(keys=[inflight], args=[cursor, batch_size, prefix, 4 * MAX_USER_AGENT])
        cursor = reply[0].decode()
        batch = SessionBatch.from_reply(reply, prefix)
        if batch.count or batch.ended_sids:
            yield batch
        if cursor == "0":
            return


def changed_ended(ended_sids: list[bytes], shard: int = 0) -> None:
    """Written: these ended sessions (of `shard`) may now expire from Redis."""
    keep = get_settings().ENDED_SESSION_KEEP_SECONDS
    _script("ack_sessions")(
        keys=[keys.dirty_inflight(shard), keys.dirty(shard)],
        args=[keys.session_prefix(shard), keep, "0", *ended_sids],
    )


def changed_done(shard: int = 0) -> None:
    """Every in-flight session of `shard` is written: its in-flight set goes."""
    _script("ack_sessions")(
        keys=[keys.dirty_inflight(shard), keys.dirty(shard)],
        args=[keys.session_prefix(shard), get_settings().ENDED_SESSION_KEEP_SECONDS, "1"],
    )


@contextmanager
def sessions_rendered(
    hashes: list[tuple[bytes, dict[bytes, bytes]]],
) -> Iterator[Iterator[SessionBatch]]:
    """Session hashes kept elsewhere (the quarantine's copies) rendered again by the current
    reader, under keys of their own, so a live session of the same id is not touched."""
    client = get_redis()
    scratch_set, scratch_prefix = keys.quarantine_retry_set(), keys.quarantine_retry_prefix()
    pipe = client.pipeline(transaction=True)
    pipe.delete(scratch_set)
    for sid, fields in hashes:
        pipe.delete(scratch_prefix.encode() + sid)
        if fields:
            pipe.hset(scratch_prefix.encode() + sid, mapping=dict[Any, Any](fields))
        pipe.sadd(scratch_set, sid)
    pipe.execute()
    try:
        yield changed_sessions(len(hashes), inflight=scratch_set, prefix=scratch_prefix)
    finally:
        client.delete(scratch_set, *(scratch_prefix.encode() + sid for sid, _ in hashes))


def session_hashes(prefix: str, sids: list[bytes]) -> list[dict[bytes, bytes]]:
    """Sessions' hashes as Redis holds them, field by field (for the quarantine's record)."""
    pipe = get_redis().pipeline(transaction=False)
    for sid in sids:
        pipe.hgetall(prefix.encode() + sid)
    return pipe.execute()


# --- Events ----------------------------------------------------------------------------------


def events_after(
    position: tuple[int, int], count: int, shard: int = 0
) -> list[tuple[str, dict[bytes, Any]]]:
    """Up to `count` entries of a shard's stream after `position` (ms, seq), oldest first."""
    entries = cast(
        list[tuple[bytes, dict[bytes, Any]]],
        get_redis().xrange(keys.events(shard), min=f"({position[0]}-{position[1]}", count=count),
    )
    return [(stream_id.decode(), fields) for stream_id, fields in entries]


def events_done(position: tuple[int, int], shard: int = 0) -> None:
    """Written up to `position`: drop those entries from the shard's stream."""
    get_redis().xtrim(
        keys.events(shard), minid=f"{position[0]}-{position[1] + 1}", approximate=False
    )


def events_backlog(shard: int = 0) -> int:
    return get_redis().xlen(keys.events(shard))


EVENT_TYPE_VALUES = frozenset(EventType.values)
MAX_ID = 2**63 - 1


def _timestamp(value: object, name: str) -> datetime:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RowRefused(f"{name}: missing or not a number")
    if not EARLIEST <= value <= time.time() + FUTURE_SLACK:  # NaN fails too
        raise RowRefused(f"{name}: not a time between 2000 and tomorrow")
    return datetime.fromtimestamp(value, tz=UTC)


def _optional_id(value: object, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_ID:
        raise RowRefused(f"{name}: not a user id")
    return value


def _string(data: dict, name: str, limit: int) -> str:
    """Text as the entry points would have kept it: no NUL, no lone surrogate, bounded."""
    value = data.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RowRefused(f"{name}: not a string")
    return value.replace("\x00", "")[:limit].encode("utf-8", "replace").decode()


def anonymize(address: IPAddress) -> IPAddress:
    """Keep the network, drop the host: /24 for IPv4, /48 for IPv6."""
    prefix = 24 if address.version == 4 else 48
    return ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address


def _address(value: object, anonymize_ip: bool) -> IPAddress | None:
    if value is None or value == "":
        return None
    try:
        address = ipaddress.ip_address(value) if isinstance(value, str) else None
    except ValueError:
        address = None
    # A zone ("fe80::1%eth0") is no part of a client address; PostgreSQL's inet refuses it.
    if address is None or getattr(address, "scope_id", None) is not None:
        raise RowRefused("ip: not a host address")
    return anonymize(address) if anonymize_ip else address


def event_row(stream_id: str, fields: dict, anonymize_ip: bool) -> tuple:
    """A stream entry as a row of audit_event, or RowRefused saying what is wrong with it."""
    payload = fields.get(b"d")
    if payload is None:
        raise RowRefused("payload: missing")
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise RowRefused("payload: not JSON in UTF-8") from None
    if not isinstance(data, dict):
        raise RowRefused("payload: not a JSON object")
    if data.get("type") not in EVENT_TYPE_VALUES:
        raise RowRefused("type: not a known event type")
    return (
        stream_id,
        data["type"],
        _optional_id(data.get("uid"), "uid"),
        _string(data, "username", MAX_USERNAME),
        _address(data.get("ip"), anonymize_ip),
        _string(data, "ua", MAX_USER_AGENT),
        _string(data, "sid", 64),
        _string(data, "reason", 32),
        _optional_id(data.get("actor"), "actor"),
        _timestamp(data.get("ts"), "ts"),
    )
