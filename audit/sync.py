"""Redis → PostgreSQL: the bulk copy under audit.services.sync_run.

At-least-once delivery, exactly-once effect:

* **Sessions.** The set of sessions changed since the last run is renamed to an in-flight set
  (a crashed run's in-flight set is finished first). One Lua call returns a batch of sessions
  already rendered as COPY text, so Python streams it to PostgreSQL without handling each row
  (a reader thread keeps the next batches coming while PostgreSQL writes). Per transaction of
  about SYNC_COMMIT_ROWS sessions: COPY into a temporary table, then one `INSERT … ON
  CONFLICT DO UPDATE` for new and known sessions alike (heap-only updates: no indexed column
  changes while a session is open). Counts are absolute and only move forward
  (GREATEST), so a replay — after a crash between commit and acknowledgement, a task
  delivered twice, two runs at once — writes the same numbers. Only after the commit is the
  in-flight set deleted and ended sessions allowed to expire from Redis.
* **Events.** Read from the stream after the cursor kept *in PostgreSQL*; rows and the new
  cursor commit together, and the stream id is a unique key, so an event is stored once
  however often it is read. Only then is the stream trimmed up to the cursor.
"""

import ipaddress
import json
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from django.db import DataError, connection, transaction

from sessionhub.conf import get_settings
from sessionhub.redis import get_redis
from sessionhub.rediskeys import keys

logger = logging.getLogger(__name__)

LUA_DIR = Path(__file__).parent / "lua"
EVENT_CURSOR = "events"
Progress = Callable[[str, int, int], None]

STAGING_DDL = """
CREATE TEMP TABLE IF NOT EXISTS sync_session_stage (
    sid text, user_id bigint, ip text, user_agent text, started double precision,
    last_active double precision, ended double precision, end_reason text,
    api_call_count bigint, hourly_calls jsonb, generation bigint
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS sync_event_stage (
    stream_id text, event_type text, user_id bigint, username text, ip inet, user_agent text,
    session_id text, reason text, actor_id bigint, occurred_at timestamptz
) ON COMMIT DELETE ROWS;
TRUNCATE sync_session_stage, sync_event_stage;
"""

COPY_SESSIONS = "COPY sync_session_stage FROM STDIN (FORMAT text)"

# Within a generation, counts are absolute and only move forward: the newer copy holds every
# hour of the older one, each at least as large. A newer generation (Redis lost the session and
# a web process rebuilt it, counting from zero) is added to what the earlier ones left.
SESSION_MERGE = """
    generation = GREATEST(s.generation, {new}.generation),
    calls_before = CASE WHEN {new}.generation > s.generation
                        THEN s.api_call_count ELSE s.calls_before END,
    hourly_before = CASE WHEN {new}.generation > s.generation
                         THEN s.hourly_calls ELSE s.hourly_before END,
    api_call_count = CASE WHEN {new}.generation > s.generation
                          THEN s.api_call_count + {new}.api_call_count
                          ELSE GREATEST(s.api_call_count, s.calls_before + {new}.api_call_count)
                     END,
    hourly_calls = CASE
        WHEN {new}.generation > s.generation
            THEN audit_hours_sum(s.hourly_calls, {new}.hourly_calls)
        WHEN s.calls_before + {new}.api_call_count < s.api_call_count THEN s.hourly_calls
        WHEN s.calls_before = 0 THEN {new}.hourly_calls
        ELSE audit_hours_sum(s.hourly_before, {new}.hourly_calls)
    END,
    last_active = GREATEST(s.last_active, {new}.last_active),
    ended_at = COALESCE(s.ended_at, {new}.ended_at),
    end_reason = CASE WHEN s.ended_at IS NULL THEN {new}.end_reason ELSE s.end_reason END
"""
SESSION_CHANGED = """
    {new}.generation >= s.generation AND (
        {new}.generation > s.generation OR s.last_active < {new}.last_active
        OR s.api_call_count < s.calls_before + {new}.api_call_count
        OR (s.ended_at IS NULL AND {new}.ended_at IS NOT NULL))
"""

# The stage as audit_session's columns; the IP optionally cut to its network (/24, /48).
# SSCAN may return a session twice (the set's table being resized): a transaction holding a
# duplicate keeps the copy with the most calls ({distinct}); the usual one skips that sort.
STAGED_SESSIONS = """
    SELECT {distinct}
        st.sid, st.user_id,
        CASE WHEN coalesce(st.ip, '') = '' THEN NULL
             WHEN %(anonymize)s THEN host(network(set_masklen(st.ip::inet,
                 CASE WHEN family(st.ip::inet) = 4 THEN 24 ELSE 48 END)))::inet
             ELSE st.ip::inet END AS ip,
        st.user_agent, to_timestamp(st.started) AS started_at,
        to_timestamp(st.last_active) AS last_active, to_timestamp(st.ended) AS ended_at,
        st.end_reason, st.api_call_count, st.hourly_calls, coalesce(st.generation, 0) AS generation,
        0 AS calls_before, '{{}}'::jsonb AS hourly_before
    FROM sync_session_stage st
    WHERE st.started IS NOT NULL AND st.last_active IS NOT NULL
    {order}
"""
DEDUPLICATE = {
    "distinct": "DISTINCT ON (st.sid)",
    "order": "ORDER BY st.sid, st.api_call_count DESC",
}
AS_IS = {"distinct": "", "order": ""}

SESSION_COLUMNS = (
    "sid, user_id, ip, user_agent, started_at, last_active, ended_at, end_reason, "
    "api_call_count, hourly_calls, generation, calls_before, hourly_before"
)

# One statement for new and known sessions: the unique index arbitrates each row, so no plan
# has to join audit_session (whose statistics lag behind while it grows), and a session that
# did not change is left as it is.
UPSERT_SESSIONS = f"""
INSERT INTO audit_session AS s ({SESSION_COLUMNS})
SELECT n.* FROM ({{staged}}) n
JOIN accounts_user u ON u.id = n.user_id
ON CONFLICT (sid) DO UPDATE SET {SESSION_MERGE.format(new="EXCLUDED")}
WHERE {SESSION_CHANGED.format(new="EXCLUDED")}
"""  # noqa: S608 - built from constants

# For a stage of distinct sessions, and for one that may hold duplicates.
UPSERT_DISTINCT = UPSERT_SESSIONS.format(staged=STAGED_SESSIONS.format(**AS_IS))
UPSERT_DEDUPLICATING = UPSERT_SESSIONS.format(staged=STAGED_SESSIONS.format(**DEDUPLICATE))

UPSERT_USER_ACTIVITY = """
INSERT INTO audit_user_activity AS a (user_id, first_active, last_active)
SELECT st.user_id, to_timestamp(min(st.started)), to_timestamp(max(st.last_active))
FROM sync_session_stage st JOIN accounts_user u ON u.id = st.user_id
WHERE st.started IS NOT NULL AND st.last_active IS NOT NULL
GROUP BY st.user_id
ON CONFLICT (user_id) DO UPDATE SET
    first_active = LEAST(a.first_active, EXCLUDED.first_active),
    last_active = GREATEST(a.last_active, EXCLUDED.last_active)
WHERE a.first_active > EXCLUDED.first_active OR a.last_active < EXCLUDED.last_active
"""

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

INSERT_EVENTS = f"""
INSERT INTO audit_event ({EVENT_COLUMNS})
SELECT e.stream_id, e.event_type, u.id, e.username, e.ip, e.user_agent, e.session_id, e.reason,
       a.id, e.occurred_at
FROM sync_event_stage e
LEFT JOIN accounts_user u ON u.id = e.user_id
LEFT JOIN accounts_user a ON a.id = e.actor_id
ON CONFLICT (stream_id) DO NOTHING
"""  # noqa: S608 - built from constant column names

ADVANCE_CURSOR = """
INSERT INTO audit_sync_cursor (name, last_ms, last_seq, updated_at)
VALUES (%s, %s, %s, now())
ON CONFLICT (name) DO UPDATE SET
    last_ms = EXCLUDED.last_ms, last_seq = EXCLUDED.last_seq, updated_at = now()
WHERE (audit_sync_cursor.last_ms, audit_sync_cursor.last_seq)
    < (EXCLUDED.last_ms, EXCLUDED.last_seq)
"""


def _script(name: str):
    client = get_redis()
    return client.register_script((LUA_DIR / f"{name}.lua").read_text())


def _ts(value) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(float(value), tz=UTC)


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return value.replace("\x00", "")


def anonymize(address: ipaddress.IPv4Address | ipaddress.IPv6Address):
    """Keep the network, drop the host: /24 for IPv4, /48 for IPv6."""
    prefix = 24 if address.version == 4 else 48
    return ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address


def _ip(value: bytes | str | None, anonymize_ip: bool):
    text = _text(value)
    if not text:
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    return anonymize(address) if anonymize_ip else address


@dataclass(slots=True)
class SessionBatch:
    """Sessions as COPY text lines (one per session, in the chunks Redis returned them), their
    sids, and which have ended."""

    chunks: list[bytes]
    sids: list[bytes]
    ended_sids: list[str]

    @classmethod
    def from_reply(cls, copy_text: bytes, ended_sids: list[str]) -> "SessionBatch":
        sids = [line.partition(b"\t")[0] for line in copy_text.splitlines()]
        return cls([copy_text], sids, ended_sids)

    @property
    def count(self) -> int:
        return len(self.sids)

    @property
    def distinct(self) -> bool:
        return len(set(self.sids)) == len(self.sids)

    def extend(self, other: "SessionBatch") -> None:
        self.chunks.extend(other.chunks)
        self.sids.extend(other.sids)
        self.ended_sids.extend(other.ended_sids)


def sanitized(copy_text: bytes) -> bytes:
    """The slow path for a batch PostgreSQL refused: every line made acceptable, or dropped.

    The Lua renderer escapes text and checks numbers; what it cannot know is whether an IP
    parses or a user agent is valid UTF-8 (Redis stores bytes). Fix those here, row by row.
    """
    good = []
    for line in copy_text.split(b"\n"):
        fields = line.split(b"\t")
        if len(fields) != 11:
            continue
        fields[3] = fields[3].decode("utf-8", "replace").encode()
        try:
            ipaddress.ip_address(fields[2].decode())
        except (UnicodeDecodeError, ValueError):
            fields[2] = b""
        good.append(b"\t".join(fields) + b"\n")
    return b"".join(good)


def _copy(cursor, table: str, columns: str, types: list[str], rows: list[tuple]) -> None:
    with cursor.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)


def _raw_cursor():
    connection.ensure_connection()
    return connection.connection.cursor()


def write_sessions(batch: SessionBatch, *, anonymize_ip: bool) -> int:
    """One transaction: COPY to staging, upsert the sessions, then the users' activity.

    A batch PostgreSQL refuses (an unparseable IP, bytes that are not UTF-8) is written again
    through `sanitized`; nothing else about it changes.
    """
    upsert = UPSERT_DISTINCT if batch.distinct else UPSERT_DEDUPLICATING
    try:
        _write_sessions(batch.chunks, anonymize_ip, upsert)
    except DataError:
        logger.warning("sync: a session batch needed sanitizing")
        _write_sessions([sanitized(b"".join(batch.chunks))], anonymize_ip, upsert)
    return batch.count


def _write_sessions(chunks: list[bytes], anonymize_ip: bool, upsert: str) -> None:
    params = {"anonymize": anonymize_ip}
    with transaction.atomic(), _raw_cursor() as cursor:
        cursor.execute(STAGING_DDL)
        cursor.execute("SET LOCAL work_mem = '64MB'")  # the de-duplicating sort stays in memory
        # Each staged session looks its user up by primary key. A hash or merge join would read
        # the whole user table per transaction instead: at 1M users that more than doubled the
        # time of a sync (bench_sync).
        cursor.execute("SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off")
        with cursor.copy(COPY_SESSIONS) as copy:
            for chunk in chunks:
                copy.write(chunk)
        cursor.execute(upsert, params)
        cursor.execute(UPSERT_USER_ACTIVITY)


def _read_session_batches(batch_size: int) -> Iterator[SessionBatch]:
    reader = _script("read_sessions")
    cursor = "0"
    while True:
        reply = reader(
            keys=[keys.dirty_inflight()], args=[cursor, batch_size, keys.session_prefix()]
        )
        cursor, copy_text = reply[0].decode(), reply[1]
        if copy_text:
            yield SessionBatch.from_reply(copy_text, [sid.decode() for sid in reply[2:]])
        if cursor == "0":
            return


def _prefetch(batches: Iterator, depth: int) -> Iterator:
    """Read Redis in a thread while the caller writes PostgreSQL: the two overlap.

    `depth` batches may wait: enough for the reader to fill the next commit group while the
    writer works on the current one (with less, it stops after a few batches and waits).
    """
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    done = object()

    def pump() -> None:
        try:
            for item in batches:
                buffer.put(item)
        except BaseException as exc:  # handed to the consumer, raised there
            buffer.put(exc)
        finally:
            buffer.put(done)

    threading.Thread(target=pump, name="sync-reader", daemon=True).start()
    while True:
        item = buffer.get()
        if item is done:
            return
        if isinstance(item, BaseException):
            raise item
        yield item


def _commit_groups(batches: Iterator[SessionBatch], rows: int) -> Iterator[SessionBatch]:
    """Redis batches joined into transactions of about `rows` sessions: each commit waits for
    the WAL to reach the disk, so fewer, larger commits go faster."""
    group = None
    for batch in batches:
        if group is None:
            group = batch
        else:
            group.extend(batch)
        if group.count >= rows:
            yield group
            group = None
    if group is not None:
        yield group


def sync_sessions(*, batch_size: int, progress: Progress | None = None, renew=None) -> int:
    """Copy every changed session; acknowledge in Redis only after each commit.

    A crashed run's in-flight set is finished first, then what changed meanwhile.
    """
    conf = get_settings()
    claim, ack = _script("claim_dirty"), _script("ack_sessions")
    written = 0
    for _ in range(2):
        total = claim(keys=[keys.dirty(), keys.dirty_inflight()])
        if not total:
            break
        done = 0
        depth = 2 * max(1, conf.SYNC_COMMIT_ROWS // batch_size)
        batches = _prefetch(_read_session_batches(batch_size), depth)
        for group in _commit_groups(batches, conf.SYNC_COMMIT_ROWS):
            done += write_sessions(group, anonymize_ip=conf.AUDIT_IP_ANONYMIZE)
            if group.ended_sids:
                ack(
                    keys=[keys.dirty_inflight(), keys.dirty()],
                    args=[
                        keys.session_prefix(),
                        conf.ENDED_SESSION_KEEP_SECONDS,
                        "0",
                        *group.ended_sids,
                    ],
                )
            if progress:
                progress("sessions", done, total)
            if renew:
                renew()
        ack(
            keys=[keys.dirty_inflight(), keys.dirty()],
            args=[keys.session_prefix(), conf.ENDED_SESSION_KEEP_SECONDS, "1"],
        )
        written += done
    if written:
        get_redis().hincrby(keys.stats(), "sync_sessions", written)
    return written


def _event_row(stream_id: str, payload: bytes, anonymize_ip: bool) -> tuple:
    data = json.loads(payload)
    user_id, actor_id = data.get("uid"), data.get("actor")
    return (
        stream_id,
        _text(data.get("type")),
        user_id if isinstance(user_id, int) else None,
        _text(data.get("username"))[:150],
        _ip(data.get("ip"), anonymize_ip),
        _text(data.get("ua")),
        _text(data.get("sid"))[:64],
        _text(data.get("reason"))[:32],
        actor_id if isinstance(actor_id, int) else None,
        _ts(data.get("ts")),
    )


def _cursor_position() -> tuple[int, int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT last_ms, last_seq FROM audit_sync_cursor WHERE name = %s", [EVENT_CURSOR]
        )
        row = cursor.fetchone()
    return (row[0], row[1]) if row else (0, 0)


def sync_events(*, batch_size: int, progress: Progress | None = None, renew=None) -> int:
    """Copy stream events after the cursor; the cursor moves in the same transaction."""
    conf = get_settings()
    client = get_redis()
    position = _cursor_position()
    # Finish an acknowledgement a crash interrupted: PostgreSQL holds everything up to here.
    client.xtrim(keys.events(), minid=f"{position[0]}-{position[1] + 1}", approximate=False)
    backlog = client.xlen(keys.events())
    written = 0
    while True:
        entries = client.xrange(
            keys.events(), min=f"({position[0]}-{position[1]}", count=batch_size
        )
        if not entries:
            break
        rows = []
        for stream_id, fields in entries:
            try:
                rows.append(_event_row(stream_id.decode(), fields[b"d"], conf.AUDIT_IP_ANONYMIZE))
            except (KeyError, ValueError, TypeError):
                logger.error("sync: skipping malformed event %s", stream_id.decode())
        last_ms, last_seq = (int(part) for part in entries[-1][0].decode().split("-"))
        with transaction.atomic(), _raw_cursor() as cursor:
            cursor.execute(STAGING_DDL)
            _copy(cursor, "sync_event_stage", EVENT_COLUMNS, EVENT_TYPES, rows)
            cursor.execute(INSERT_EVENTS)
            cursor.execute(ADVANCE_CURSOR, [EVENT_CURSOR, last_ms, last_seq])
        position = (last_ms, last_seq)
        # Acknowledge: drop what PostgreSQL now holds (everything up to the cursor).
        client.xtrim(keys.events(), minid=f"{last_ms}-{last_seq + 1}", approximate=False)
        written += len(entries)
        if progress:
            progress("events", written, max(backlog, written))
        if renew:
            renew()
        if len(entries) < batch_size:
            break
    if written:
        client.hincrby(keys.stats(), "sync_events", written)
    return written
