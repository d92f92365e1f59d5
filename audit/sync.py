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
  in-flight set deleted and ended sessions allowed to expire from Redis. The analytics layer's
  statement triggers on audit_session and audit_user_activity (analytics_user_day and
  analytics_user_stats, analytics/rollups.py) run inside the upserts, under this transaction's
  settings (hash and merge joins off, and `sessionhub.bulk_sync` on): in the sync they append
  narrow per-(user, day) deltas and the users whose activity moved, which commit with the
  sessions or not at all, and `signals.sessions_synced`, sent once the run's last transaction
  has committed, has them folded into the rollups once per run.
* **Events.** Read from the stream after the cursor kept *in PostgreSQL*; rows and the new
  cursor commit together, and the stream id is a unique key, so an event is stored once
  however often it is read. Only then is the stream trimmed up to the cursor.
* **Shards.** Each virtual shard (core.rediskeys) has its own dirty and in-flight sets, its
  own event stream and its own cursor (`audit_sync_cursor` row `events:<shard>`; `events`
  with a single shard), so each shard is synced, acknowledged and retried on its own: the
  exactly-once effect holds per shard, and a shard whose node is away holds up no other. With
  several shards an event's `stream_id` is `<shard>:<stream id>` (two streams may hand out
  the same id).
* **Rows that cannot be written.** Redis holds bytes, and a hash or an event written around
  the validating entry points may hold anything. Such a row must not stall the sync (every
  later run would fail on it, and the backlog grow without bound), nor be dropped silently.
  The Lua reader and `accounts.export.event_row` check each field's shape and set a malformed
  row aside with its problem; what only PostgreSQL can judge (UTF-8, an address that looked
  right) is found when it refuses a batch: the transaction is rolled back and written again
  with the refused rows isolated — cut out at the COPY line PostgreSQL names, else by halving
  the batch in savepoints. Either way the refused rows go to `audit_quarantine` with the
  reason, in the transaction that commits the rest, before Redis is acknowledged. The usual
  batch pays nothing for this: one COPY and one upsert, as before.
"""

import hashlib
import json
import logging
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from django.db import DataError, IntegrityError, connection, transaction

from accounts import export
from accounts.events import MAX_USER_AGENT
from core.conf import get_settings
from core.redis import get_redis
from core.rediskeys import keys

from . import signals
from .models import SyncQuarantine

logger = logging.getLogger(__name__)

EVENT_CURSOR = "events"
Progress = Callable[[str, int, int], None]

# Staging tables in the layouts accounts.export renders sessions and events in.
STAGING_DDL = f"""
CREATE TEMP TABLE IF NOT EXISTS sync_session_stage ({export.SESSION_STAGE_COLUMNS})
    ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS sync_event_stage ({export.EVENT_STAGE_COLUMNS})
    ON COMMIT DELETE ROWS;
"""

COPY_SESSIONS = "COPY sync_session_stage FROM STDIN (FORMAT text)"

# Within a generation, counts are absolute and only move forward: the newer copy holds every
# hour of the older one, each at least as large. A newer generation (Redis lost the session and
# a web process rebuilt it, counting from zero) is added to what the earlier ones left, and
# reopens a session closed as `lost` meanwhile (audit.lost): it was not lost after all.
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
    ended_at = CASE WHEN {new}.generation > s.generation AND s.end_reason = 'lost'
                    THEN {new}.ended_at ELSE COALESCE(s.ended_at, {new}.ended_at) END,
    end_reason = CASE WHEN s.ended_at IS NULL
                           OR ({new}.generation > s.generation AND s.end_reason = 'lost')
                      THEN {new}.end_reason ELSE s.end_reason END
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
        left(st.user_agent, %(ua_chars)s), to_timestamp(st.started) AS started_at,
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

INSERT_EVENTS = f"""
INSERT INTO audit_event ({export.EVENT_COLUMNS})
SELECT e.stream_id, e.event_type, u.id, e.username, e.ip, e.user_agent, e.session_id, e.reason,
       a.id, e.occurred_at
FROM sync_event_stage e
LEFT JOIN accounts_user u ON u.id = e.user_id
LEFT JOIN accounts_user a ON a.id = e.actor_id
ON CONFLICT (stream_id, occurred_at) DO NOTHING
"""  # noqa: S608 - built from constant column names

ADVANCE_CURSOR = """
INSERT INTO audit_sync_cursor (name, last_ms, last_seq, updated_at)
VALUES (%s, %s, %s, now())
ON CONFLICT (name) DO UPDATE SET
    last_ms = EXCLUDED.last_ms, last_seq = EXCLUDED.last_seq, updated_at = now()
WHERE (audit_sync_cursor.last_ms, audit_sync_cursor.last_seq)
    < (EXCLUDED.last_ms, EXCLUDED.last_seq)
"""


# --- Rows PostgreSQL refuses -----------------------------------------------------------------

# What PostgreSQL says about a row (bad text, a value out of range, a constraint): isolate the
# row. Anything else (a lost connection, a deadlock) is the sync's failure, retried whole.
ROW_ERRORS = (DataError, IntegrityError)
COPY_LINE = re.compile(r"^COPY sync_\w+, line (\d+)")
ERROR_CHARS = 1000
RAW_VALUE_CHARS = 65_536


@dataclass(frozen=True, slots=True)
class Refused:
    key: str
    error: str
    raw: str


def quarantine_key(value: bytes | str) -> str:
    """The id of a refused row as its quarantine key: itself when short and printable, else a
    digest (the raw row keeps the original)."""
    if isinstance(value, str):
        value = value.encode("utf-8", "surrogateescape")
    if 0 < len(value) <= 64 and value.isascii() and value.decode().isprintable():
        return value.decode()
    return "sha256:" + hashlib.sha256(value).hexdigest()


def _raw_text(value) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "surrogateescape")
    return str(value)[:RAW_VALUE_CHARS]


def raw_row(row_id: bytes | str, fields: dict) -> str:
    """A row as Redis holds it — its id and its fields — as ASCII JSON that a text column can
    hold and `parse_raw_row` gives back: bytes that are not UTF-8 become \\udcXX escapes, NUL
    \\u0000. Values are cut far beyond anything the sync keeps."""
    texts = {_raw_text(k): _raw_text(v) for k, v in fields.items()}
    return json.dumps({"id": _raw_text(row_id), "fields": texts}, sort_keys=True)


def parse_raw_row(raw: str) -> tuple[bytes, dict[bytes, bytes]]:
    data = json.loads(raw)

    def back(text: str) -> bytes:
        return text.encode("utf-8", "surrogateescape")

    return back(data["id"]), {back(k): back(v) for k, v in data["fields"].items()}


def _error_text(exc: BaseException) -> str:
    cause = exc.__cause__ or exc
    diag = getattr(cause, "diag", None)
    message = (diag and diag.message_primary) or str(cause).split("\n", 1)[0]
    return message[:ERROR_CHARS]


def _copy_line(exc: BaseException) -> int | None:
    """The line (1-based) of the COPY data PostgreSQL refused, when the error came from COPY."""
    diag = getattr(exc.__cause__, "diag", None)
    match = COPY_LINE.match((diag and diag.context) or "")
    return int(match[1]) if match else None


def _attempt(cursor, write: Callable, items: list) -> None:
    cursor.execute("SAVEPOINT sync_rows")
    try:
        with connection.wrap_database_errors:
            write(cursor, items)
    except ROW_ERRORS:
        cursor.execute("ROLLBACK TO SAVEPOINT sync_rows")
        raise
    cursor.execute("RELEASE SAVEPOINT sync_rows")


def _isolate(cursor, write: Callable, items: list, renew=None) -> list[tuple[object, str]]:
    """Write `items`, each attempt in a savepoint, leaving out the ones PostgreSQL refuses.

    A COPY names the line it refused: that one is set aside and the lines around it tried
    again, so each line is copied about twice. A refusal without a line (a cast or constraint
    in the upsert) halves the attempt: k bad rows among n cost about 2·k·log2(n) attempts.
    """
    refused: list[tuple[object, str]] = []
    pending = [items]
    renewed = time.monotonic()
    while pending:
        chunk = pending.pop()
        if renew and time.monotonic() - renewed > 1:
            renew()
            renewed = time.monotonic()
        try:
            _attempt(cursor, write, chunk)
            continue
        except ROW_ERRORS as exc:
            error, line = exc, _copy_line(exc)
        if len(chunk) == 1:
            refused.append((chunk[0], _error_text(error)))
        elif line is not None and line <= len(chunk):
            refused.append((chunk[line - 1], _error_text(error)))
            pending += [part for part in (chunk[line:], chunk[: line - 1]) if part]
        else:
            half = len(chunk) // 2
            pending += [chunk[half:], chunk[:half]]
    return refused


def _write(
    write: Callable, chunks: list, split: Callable[[list], list], finish: Callable, renew=None
) -> list[tuple[object, str]]:
    """One transaction: `write` the chunks, then `finish` (quarantine, cursor) with what was
    refused. The usual case is a single attempt with no savepoint; when PostgreSQL refuses a
    row, that transaction is rolled back and a second one isolates the refused rows."""
    try:
        with transaction.atomic(), _raw_cursor() as cursor, connection.wrap_database_errors:
            cursor.execute(STAGING_DDL)
            write(cursor, chunks)
            finish(cursor, [])
        return []
    except ROW_ERRORS as exc:
        # The kind of error only: its message may quote the row (an IP, a user agent).
        kind = type(exc.__cause__ or exc).__name__
        logger.warning("sync: PostgreSQL refused a batch (%s); isolating the rows", kind)
    with transaction.atomic(), _raw_cursor() as cursor:
        cursor.execute(STAGING_DDL)
        refused = _isolate(cursor, write, split(chunks), renew)
        finish(cursor, refused)
    logger.warning("sync: %d rows of the batch quarantined", len(refused))
    return refused


QUARANTINE = """
INSERT INTO audit_quarantine AS q (kind, key, raw, error, first_seen, last_seen, attempts)
VALUES (%s, %s, %s, %s, now(), now(), 1)
ON CONFLICT (kind, key) DO UPDATE SET
    raw = EXCLUDED.raw, error = EXCLUDED.error, last_seen = now(), attempts = q.attempts + 1
"""
RESOLVE = "DELETE FROM audit_quarantine WHERE kind = %s AND key = ANY(%s)"


def _quarantine(cursor, kind: str, refused: list[Refused]) -> None:
    if refused:
        cursor.executemany(QUARANTINE, [(kind, r.key, r.raw, r.error) for r in refused])


def _resolve(cursor, kind: str, landed: set[str], quarantined: set[str]) -> None:
    """Rows of this kind held in quarantine that have now been written leave it."""
    done = landed & quarantined
    if done:
        cursor.execute(RESOLVE, [kind, sorted(done)])
        quarantined -= done


def quarantined_keys(kind: str) -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT key FROM audit_quarantine WHERE kind = %s", [kind])
        return {key for (key,) in cursor.fetchall()}


# --- Sessions --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Written:
    rows: int
    quarantined: int


def _raw_cursor():
    connection.ensure_connection()
    return connection.connection.cursor()


def _session_writer(anonymize_ip: bool, distinct: bool, defer_upkeep: bool):
    params = {"anonymize": anonymize_ip, "ua_chars": MAX_USER_AGENT}

    def write(cursor, chunks: list[bytes]) -> None:
        upsert = UPSERT_DISTINCT
        if not distinct:  # only a subset of the batch may be written: it may be distinct
            sids = [line.partition(b"\t")[0] for c in chunks for line in c.split(b"\n") if line]
            upsert = UPSERT_DISTINCT if len(set(sids)) == len(sids) else UPSERT_DEDUPLICATING
        cursor.execute("TRUNCATE sync_session_stage")
        cursor.execute("SET LOCAL work_mem = '64MB'")  # the de-duplicating sort stays in memory
        # Each staged session looks its user up by primary key. A hash or merge join would read
        # the whole user table per transaction instead: at 1M users that more than doubled the
        # time of a sync (bench_sync).
        cursor.execute("SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off")
        # In a run of several transactions the sessions' and activity's upserts are a bulk
        # sync's: the upkeep of tables derived from audit_session and audit_user_activity may
        # defer work to the end of the run (signals.sessions_synced). Off again right after,
        # for whatever else the enclosing transaction may write.
        cursor.execute(
            "SELECT set_config('sessionhub.bulk_sync', %s, true)", ["on" if defer_upkeep else "off"]
        )
        with cursor.copy(COPY_SESSIONS) as copy:
            for chunk in chunks:
                copy.write(chunk)
        cursor.execute(upsert, params)
        cursor.execute(UPSERT_USER_ACTIVITY)
        cursor.execute("SELECT set_config('sessionhub.bulk_sync', 'off', true)")

    return write


def _session_lines(chunks: list[bytes]) -> list[bytes]:
    return [line + b"\n" for line in b"".join(chunks).split(b"\n") if line]


def _session_raw(prefix: str, sids: list[bytes]) -> list[str]:
    """The refused sessions' hashes as Redis holds them now (they are still in flight, so
    nothing has let them expire)."""
    hashes = export.session_hashes(prefix, sids)
    return [raw_row(sid, fields) for sid, fields in zip(sids, hashes, strict=True)]


def write_sessions(
    batch: export.SessionBatch,
    *,
    anonymize_ip: bool,
    quarantined: set[str] | None = None,
    renew=None,
    defer_upkeep: bool = False,
) -> Written:
    """One transaction: COPY to staging, upsert the sessions, then the users' activity; the
    sessions refused — by the reader or by PostgreSQL — go to the quarantine in it too.

    `quarantined` holds the session keys in quarantine (updated here): a session written now
    leaves the quarantine. `defer_upkeep`: the run has more transactions to come and ends with
    `signals.sessions_synced`, so derived tables may defer their upkeep to it.
    """
    quarantined = set() if quarantined is None else quarantined
    refused_count = 0
    write = _session_writer(anonymize_ip, batch.distinct, defer_upkeep)

    def finish(cursor, isolated: list[tuple[bytes, str]]) -> None:
        nonlocal refused_count
        failed = [*batch.problems, *((line.partition(b"\t")[0], e) for line, e in isolated)]
        raws = _session_raw(batch.prefix, [sid for sid, _ in failed]) if failed else []
        refused = [
            Refused(quarantine_key(sid), error, raw)
            for (sid, error), raw in zip(failed, raws, strict=True)
        ]
        _quarantine(cursor, SyncQuarantine.Kind.SESSION, refused)
        refused_count = len(refused)
        keys_refused = {r.key for r in refused}
        if quarantined:
            landed = {sid.decode() for sid in batch.sids} - keys_refused
            _resolve(cursor, SyncQuarantine.Kind.SESSION, landed, quarantined)
        quarantined.update(keys_refused)

    if batch.chunks:
        _write(write, batch.chunks, _session_lines, finish, renew)
    elif batch.problems:
        with transaction.atomic(), _raw_cursor() as cursor:
            finish(cursor, [])
    return Written(batch.count - refused_count, refused_count)


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


def _commit_groups(
    batches: Iterator[export.SessionBatch], rows: int
) -> Iterator[export.SessionBatch]:
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


@dataclass(frozen=True, slots=True)
class Synced:
    rows: int
    quarantined: int


def sync_sessions(
    *, batch_size: int, progress: Progress | None = None, renew=None, shard: int = 0
) -> Synced:
    """Copy every changed session of `shard`; acknowledge in Redis only after each commit.

    A crashed run's in-flight set is finished first, then what changed meanwhile.
    """
    conf = get_settings()
    written = quarantined_now = 0
    quarantined = quarantined_keys(SyncQuarantine.Kind.SESSION)
    for _ in range(2):
        total = export.changed_claim(shard)
        if not total:
            break
        done = 0
        depth = 2 * max(1, conf.SYNC_COMMIT_ROWS // batch_size)
        batches = _prefetch(export.changed_sessions(batch_size, shard=shard), depth)
        # Upkeep deferred to the end of the run pays when the run has several transactions;
        # a run of one transaction does it in that transaction, once either way.
        defer = total > conf.SYNC_COMMIT_ROWS
        for group in _commit_groups(batches, conf.SYNC_COMMIT_ROWS):
            result = write_sessions(
                group,
                anonymize_ip=conf.AUDIT_IP_ANONYMIZE,
                quarantined=quarantined,
                renew=renew,
                defer_upkeep=defer,
            )
            done += result.rows + result.quarantined
            written += result.rows
            quarantined_now += result.quarantined
            if group.ended_sids:
                export.changed_ended(group.ended_sids, shard)
            if progress:
                progress("sessions", done, total)
            if renew:
                renew()
        export.changed_done(shard)
    # After the last commit, even of nothing: a run that crashed before this leaves deferred
    # upkeep that the next run finishes.
    signals.sessions_synced.send(sender=__name__)
    if written or quarantined_now:
        pipe = get_redis().pipeline(transaction=False)
        pipe.hincrby(keys.stats(shard), "sync_sessions", written)
        pipe.hincrby(keys.stats(shard), "sync_quarantined:sessions", quarantined_now)
        pipe.execute()
    return Synced(written, quarantined_now)


# --- Events ----------------------------------------------------------------------------------


def _write_events(cursor, rows: list[tuple]) -> None:
    cursor.execute("TRUNCATE sync_event_stage")
    with cursor.copy(
        f"COPY sync_event_stage ({export.EVENT_COLUMNS}) FROM STDIN (FORMAT BINARY)"
    ) as copy:
        copy.set_types(export.EVENT_TYPES)
        for row in rows:
            copy.write_row(row)
    cursor.execute(INSERT_EVENTS)


def write_events(
    entries: list[tuple[str, dict]],
    *,
    anonymize_ip: bool,
    quarantined: set[str],
    then: Callable | None = None,
    renew=None,
) -> Written:
    """One transaction: the entries' rows, and the refused ones in quarantine; `then(cursor)`
    runs in it last (the sync moves its cursor there)."""
    rows, refused, raw = [], [], {}
    for stream_id, fields in entries:
        try:
            rows.append(export.event_row(stream_id, fields, anonymize_ip))
        except export.RowRefused as exc:
            refused.append(Refused(quarantine_key(stream_id), str(exc), raw_row(stream_id, fields)))
        raw[stream_id] = fields
    quarantined_count = len(refused)

    def finish(cursor, isolated: list[tuple[tuple, str]]) -> None:
        nonlocal quarantined_count
        everything = refused + [
            Refused(quarantine_key(row[0]), error, raw_row(row[0], raw[row[0]]))
            for row, error in isolated
        ]
        _quarantine(cursor, SyncQuarantine.Kind.EVENT, everything)
        quarantined_count = len(everything)
        keys_refused = {r.key for r in everything}
        if quarantined:
            landed = {row[0] for row in rows} - keys_refused
            _resolve(cursor, SyncQuarantine.Kind.EVENT, landed, quarantined)
        quarantined.update(keys_refused)
        if then:
            then(cursor)

    if rows:
        _write(_write_events, rows, list, finish, renew)
    else:
        with transaction.atomic(), _raw_cursor() as cursor:
            finish(cursor, [])
    return Written(len(entries) - quarantined_count, quarantined_count)


def cursor_name(shard: int = 0) -> str:
    """A shard's row in audit_sync_cursor: `events` as always with a single shard."""
    return f"{EVENT_CURSOR}:{shard}" if keys.sharded else EVENT_CURSOR


def event_key(shard: int, stream_id: str) -> str:
    """An event's `stream_id` in audit_event: unique across the shards' streams."""
    return f"{shard}:{stream_id}" if keys.sharded else stream_id


def _cursor_position(shard: int = 0) -> tuple[int, int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT last_ms, last_seq FROM audit_sync_cursor WHERE name = %s", [cursor_name(shard)]
        )
        row = cursor.fetchone()
    return (row[0], row[1]) if row else (0, 0)


def sync_events(
    *, batch_size: int, progress: Progress | None = None, renew=None, shard: int = 0
) -> Synced:
    """Copy a shard's stream events after its cursor; the cursor moves in the same
    transaction."""
    conf = get_settings()
    name = cursor_name(shard)
    position = _cursor_position(shard)
    # Finish an acknowledgement a crash interrupted: PostgreSQL holds everything up to here.
    export.events_done(position, shard)
    backlog = export.events_backlog(shard)
    quarantined = quarantined_keys(SyncQuarantine.Kind.EVENT)
    written = quarantined_now = handled = 0
    while True:
        entries = export.events_after(position, batch_size, shard)
        if not entries:
            break
        last_ms, last_seq = (int(part) for part in entries[-1][0].split("-"))

        def advance(cursor, last_ms=last_ms, last_seq=last_seq) -> None:
            cursor.execute(ADVANCE_CURSOR, [name, last_ms, last_seq])

        if keys.sharded:
            entries = [(event_key(shard, stream_id), fields) for stream_id, fields in entries]
        result = write_events(
            entries,
            anonymize_ip=conf.AUDIT_IP_ANONYMIZE,
            quarantined=quarantined,
            then=advance,
            renew=renew,
        )
        position = (last_ms, last_seq)
        # Acknowledge: drop what PostgreSQL now holds (everything up to the cursor).
        export.events_done(position, shard)
        written += result.rows
        quarantined_now += result.quarantined
        handled += len(entries)
        if progress:
            progress("events", handled, max(backlog, handled))
        if renew:
            renew()
        if len(entries) < batch_size:
            break
    if written or quarantined_now:
        pipe = get_redis().pipeline(transaction=False)
        pipe.hincrby(keys.stats(shard), "sync_events", written)
        pipe.hincrby(keys.stats(shard), "sync_quarantined:events", quarantined_now)
        pipe.execute()
    return Synced(written, quarantined_now)
