"""Redis → PostgreSQL: the bulk copy under audit.services.sync_run.

At-least-once delivery, exactly-once effect:

* **Sessions.** The set of sessions changed since the last run is renamed to an in-flight set
  (a crashed run's in-flight set is finished first). Batches of session hashes come back from
  one Lua call each; rows go to PostgreSQL by binary COPY into a temporary table and one
  `INSERT … ON CONFLICT DO UPDATE` per table. Counts are absolute and only move forward
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

from django.db import connection, transaction

from sessionhub.conf import get_settings
from sessionhub.redis import get_redis
from sessionhub.rediskeys import keys

logger = logging.getLogger(__name__)

LUA_DIR = Path(__file__).parent / "lua"
EVENT_CURSOR = "events"
Progress = Callable[[str, int, int], None]

STAGING_DDL = """
CREATE TEMP TABLE IF NOT EXISTS sync_session_stage (
    sid text, user_id bigint, ip inet, user_agent text, started_at timestamptz,
    last_active timestamptz, ended_at timestamptz, end_reason text, api_call_count bigint,
    hourly_calls jsonb
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS sync_event_stage (
    stream_id text, event_type text, user_id bigint, username text, ip inet, user_agent text,
    session_id text, reason text, actor_id bigint, occurred_at timestamptz
) ON COMMIT DELETE ROWS;
TRUNCATE sync_session_stage, sync_event_stage;
"""

SESSION_COLUMNS = (
    "sid, user_id, ip, user_agent, started_at, last_active, ended_at, end_reason, "
    "api_call_count, hourly_calls"
)
SESSION_TYPES = [
    "text",
    "int8",
    "inet",
    "text",
    "timestamptz",
    "timestamptz",
    "timestamptz",
    "text",
    "int8",
    "jsonb",
]

UPSERT_SESSIONS = f"""
INSERT INTO audit_session AS s ({SESSION_COLUMNS})
SELECT {", ".join("st." + c.strip() for c in SESSION_COLUMNS.split(","))}
FROM sync_session_stage st JOIN accounts_user u ON u.id = st.user_id
ON CONFLICT (sid) DO UPDATE SET
    last_active = GREATEST(s.last_active, EXCLUDED.last_active),
    api_call_count = GREATEST(s.api_call_count, EXCLUDED.api_call_count),
    -- The newer copy holds every hour of the older one, each count at least as large.
    hourly_calls = CASE WHEN EXCLUDED.api_call_count >= s.api_call_count
                        THEN EXCLUDED.hourly_calls ELSE s.hourly_calls END,
    ended_at = COALESCE(s.ended_at, EXCLUDED.ended_at),
    end_reason = CASE WHEN s.ended_at IS NULL THEN EXCLUDED.end_reason ELSE s.end_reason END
WHERE s.last_active < EXCLUDED.last_active
   OR s.api_call_count < EXCLUDED.api_call_count
   OR (s.ended_at IS NULL AND EXCLUDED.ended_at IS NOT NULL)
"""  # noqa: S608 - built from constant column names

UPSERT_USER_ACTIVITY = """
INSERT INTO audit_user_activity AS a (user_id, first_active, last_active)
SELECT st.user_id, min(st.started_at), max(st.last_active)
FROM sync_session_stage st JOIN accounts_user u ON u.id = st.user_id
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
    sessions: list[tuple]
    ended_sids: list[str]

    def extend(self, other: "SessionBatch") -> None:
        self.sessions.extend(other.sessions)
        self.ended_sids.extend(other.ended_sids)


def parse_sessions(raw: list, anonymize_ip: bool) -> SessionBatch:
    """Rows from read_sessions.lua's reply (sid, flat hash, sid, flat hash, ...)."""
    sessions, ended = [], []
    for i in range(0, len(raw), 2):
        flat = raw[i + 1]
        if not flat:  # gone since it was marked
            continue
        fields = dict(zip(flat[::2], flat[1::2], strict=True))
        ended_at = _ts(fields.get(b"end"))
        hourly = {
            name[2:].decode(): int(value)
            for name, value in fields.items()
            if name.startswith(b"h:")
        }
        sid = raw[i].decode()
        sessions.append(
            (
                sid,
                int(fields[b"u"]),
                _ip(fields.get(b"ip"), anonymize_ip),
                _text(fields.get(b"ua")),
                _ts(fields[b"st"]),
                _ts(fields[b"la"]),
                ended_at,
                _text(fields.get(b"why")),
                int(fields.get(b"n", 0)),
                hourly,
            )
        )
        if ended_at is not None:
            ended.append(sid)
    return SessionBatch(sessions, ended)


def _copy(cursor, table: str, columns: str, types: list[str], rows: list[tuple]) -> None:
    with cursor.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)


def _raw_cursor():
    connection.ensure_connection()
    return connection.connection.cursor()


def write_sessions(batch: SessionBatch) -> int:
    """One transaction: COPY to staging, then upsert the sessions and the users' activity."""
    # A set scan may return a member twice; one upsert may not touch a row twice.
    rows = list({row[0]: row for row in batch.sessions}.values())
    with transaction.atomic(), _raw_cursor() as cursor:
        cursor.execute(STAGING_DDL)
        _copy(cursor, "sync_session_stage", SESSION_COLUMNS, SESSION_TYPES, rows)
        cursor.execute(UPSERT_SESSIONS)
        cursor.execute(UPSERT_USER_ACTIVITY)
    return len(rows)


def _read_session_batches(batch_size: int, anonymize_ip: bool) -> Iterator[SessionBatch]:
    reader = _script("read_sessions")
    cursor = "0"
    while True:
        reply = reader(
            keys=[keys.dirty_inflight()], args=[cursor, batch_size, keys.session_prefix()]
        )
        cursor = reply[0].decode()
        if len(reply) > 1:
            yield parse_sessions(reply[1:], anonymize_ip)
        if cursor == "0":
            return


def _prefetch(batches: Iterator, depth: int = 4) -> Iterator:
    """Read Redis in a thread while the caller writes PostgreSQL: the two overlap."""
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
        if len(group.sessions) >= rows:
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
        batches = _prefetch(_read_session_batches(batch_size, conf.AUDIT_IP_ANONYMIZE))
        for group in _commit_groups(batches, conf.SYNC_COMMIT_ROWS):
            done += write_sessions(group)
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
