"""Writes of the audit trail: the sync from Redis, retention, and the flush of old tokens."""

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.db import connection, transaction
from django.db.models import Count
from django.utils import timezone
from rest_framework_simplejwt.token_blacklist.models import OutstandingToken

from accounts import export
from core import clock
from core.conf import get_settings
from core.locks import RedisLock
from core.redis import REDIS_UNAVAILABLE, each_shard, get_redis
from core.rediskeys import keys

from . import lost, partitions, sync
from .models import SyncQuarantine
from .sync import Progress

logger = logging.getLogger(__name__)

# Renewed after every commit; short, so a worker killed mid-run holds the others back briefly.
SYNC_LOCK_SECONDS = 30


class SyncLock(RedisLock):
    """One sync at a time (beat overlap, two beats, a manual run), renewed between batches.
    Correctness never depends on it — the writes are idempotent — it only saves doing the
    work twice."""

    def __init__(self, ttl: float = SYNC_LOCK_SECONDS, shard: int = 0) -> None:
        super().__init__(keys.sync_lock(shard), ttl, name="sync lock")


@dataclass(frozen=True)
class SyncResult:
    sessions: int
    events: int
    seconds: float
    backlog_sessions: int
    backlog_events: int
    skipped: bool = False
    quarantined_sessions: int = 0
    quarantined_events: int = 0
    lost: int = 0


def sync_backlog(shards: list[int] | None = None) -> tuple[int, int]:
    """Sessions and events waiting for the sync, in `shards` (all by default)."""
    shards = list(keys.shards()) if shards is None else shards
    client = get_redis()
    pipe = client.pipeline(transaction=False)
    for shard in shards:
        pipe.scard(keys.dirty(shard))
        pipe.scard(keys.dirty_inflight(shard))
        pipe.xlen(keys.events(shard))
    results = pipe.execute()
    return sum(results[0::3]) + sum(results[1::3]), sum(results[2::3])


def sync_run(
    *,
    progress: Progress | None = None,
    batch_size: int | None = None,
    shard: int | None = None,
) -> SyncResult:
    """Move changed sessions and new events from Redis to PostgreSQL (idempotent): of one
    shard, or of every shard in turn. In turn, a shard whose node is away does not stop the
    others: they are synced, then its error is raised (the task retries; the shards done
    meanwhile have nothing left to do)."""
    if shard is not None or keys.shard_count == 1:
        return _sync_shard(shard or 0, progress, batch_size)
    results = each_shard(lambda one: _sync_shard(one, progress, batch_size), "sync")
    return SyncResult(
        sum(r.sessions for r in results),
        sum(r.events for r in results),
        sum(r.seconds for r in results),
        sum(r.backlog_sessions for r in results),
        sum(r.backlog_events for r in results),
        skipped=all(r.skipped for r in results),
        quarantined_sessions=sum(r.quarantined_sessions for r in results),
        quarantined_events=sum(r.quarantined_events for r in results),
        lost=sum(r.lost for r in results),
    )


def _sync_shard(shard: int, progress: Progress | None, batch_size: int | None) -> SyncResult:
    """One shard's sync, under the shard's own lock."""
    batch_size = batch_size or get_settings().SYNC_BATCH_SIZE
    client = get_redis()
    lock = SyncLock(shard=shard)
    started = time.monotonic()
    if not lock.acquire():
        client.hincrby(keys.stats(shard), "sync_runs:skipped", 1)
        backlog_sessions, backlog_events = sync_backlog([shard])
        return SyncResult(0, 0, 0.0, backlog_sessions, backlog_events, skipped=True)
    try:
        sessions = sync.sync_sessions(
            batch_size=batch_size, progress=progress, renew=lock.renew, shard=shard
        )
        events = sync.sync_events(
            batch_size=batch_size, progress=progress, renew=lock.renew, shard=shard
        )
        # After the sessions: every session Redis knows is in PostgreSQL as Redis has it.
        lost_sessions = lost.sessions_lost_close(shard=shard)
        quarantine_count_publish()
    except Exception:
        with contextlib.suppress(*REDIS_UNAVAILABLE):
            client.hincrby(keys.stats(shard), "sync_runs:error", 1)
        raise
    finally:
        with contextlib.suppress(*REDIS_UNAVAILABLE):
            lock.release()
    seconds = time.monotonic() - started
    now = repr(clock.now())
    state = {"last_success": now, "last_seconds": f"{seconds:.3f}"}
    if keys.sharded:
        state[f"last_success:{shard}"] = now
    pipe = client.pipeline(transaction=False)
    pipe.hincrby(keys.stats(shard), "sync_runs:ok", 1)
    pipe.hset(keys.sync_state(), mapping=state)
    pipe.execute()
    backlog_sessions, backlog_events = sync_backlog([shard])
    return SyncResult(
        sessions.rows,
        events.rows,
        seconds,
        backlog_sessions,
        backlog_events,
        quarantined_sessions=sessions.quarantined,
        quarantined_events=events.quarantined,
        lost=lost_sessions.closed,
    )


# --- the quarantine ----------------------------------------------------------------------------

QUARANTINE_STATE: dict[str, str] = {
    SyncQuarantine.Kind.SESSION: "quarantined:sessions",
    SyncQuarantine.Kind.EVENT: "quarantined:events",
}


def quarantine_count_publish() -> dict[str, int]:
    """Put the number of quarantined rows, by kind, where /metrics reads it (Redis): every
    scrape then tells it without a database query."""
    counts: dict[str, int] = dict.fromkeys(QUARANTINE_STATE, 0)
    counts.update(SyncQuarantine.objects.values_list("kind").annotate(n=Count("id")).order_by())
    get_redis().hset(
        keys.sync_state(), mapping={QUARANTINE_STATE[kind]: n for kind, n in counts.items()}
    )
    return counts


@dataclass(frozen=True)
class RetryResult:
    landed: int
    refused: int
    skipped: bool = False


def _retry_sessions(rows: list[SyncQuarantine], anonymize_ip: bool) -> sync.Written:
    """Each stored hash rendered again by the current reader and written by the current
    writer."""
    hashes = [sync.parse_raw_row(row.raw) for row in rows]
    landed = refused = 0
    quarantined = {row.key for row in rows}
    with export.sessions_rendered(hashes) as batches:
        for batch in batches:
            written = sync.write_sessions(batch, anonymize_ip=anonymize_ip, quarantined=quarantined)
            landed += written.rows
            refused += written.quarantined
    # A hash gone entirely (nothing to render) cannot be written: it stays, refused again.
    return sync.Written(landed, len(rows) - landed)


def _retry_events(rows: list[SyncQuarantine], anonymize_ip: bool) -> sync.Written:
    entries = [(row.key, sync.parse_raw_row(row.raw)[1]) for row in rows]
    return sync.write_events(
        entries, anonymize_ip=anonymize_ip, quarantined={row.key for row in rows}
    )


def quarantine_retry(*, ids: list[int] | None = None) -> RetryResult:
    """Write quarantined rows again (all, or those `ids`) with the current code: what is
    accepted now lands and leaves the quarantine; what is refused again stays, with the new
    reason. Holds the sync lock, so it never runs beside a sync."""
    lock = SyncLock()
    if not lock.acquire():
        return RetryResult(0, 0, skipped=True)
    try:
        rows = SyncQuarantine.objects.order_by("id")
        if ids is not None:
            rows = rows.filter(id__in=ids)
        anonymize_ip = get_settings().AUDIT_IP_ANONYMIZE
        landed = refused = 0
        for kind, retry in (
            (SyncQuarantine.Kind.SESSION, _retry_sessions),
            (SyncQuarantine.Kind.EVENT, _retry_events),
        ):
            of_kind = list(rows.filter(kind=kind))
            for start in range(0, len(of_kind), 1000):
                lock.renew()
                result = retry(of_kind[start : start + 1000], anonymize_ip)
                landed += result.rows
                refused += result.quarantined
        quarantine_count_publish()
    finally:
        lock.release()
    logger.info("sync quarantine: %d rows retried, %d landed", landed + refused, landed)
    return RetryResult(landed, refused)


def quarantine_discard(*, ids: list[int]) -> int:
    """Give quarantined rows up for good: the only way a row leaves the audit trail's way
    without being written, so it is an explicit act on named rows."""
    deleted, _ = SyncQuarantine.objects.filter(id__in=ids).delete()
    quarantine_count_publish()
    logger.warning("sync quarantine: %d rows discarded", deleted)
    return deleted


# --- retention -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PruneResult:
    events: int
    sessions: int
    orphans: int = 0
    partitions: tuple[str, ...] = ()


def _delete_in_batches(
    sql: str, params: list, batch: int, progress: Callable[[int], None] | None
) -> int:
    total = 0
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, [*params, batch])
            deleted = cursor.rowcount
        total += deleted
        if progress:
            progress(total)
        if deleted < batch:
            return total


def audit_prune(
    *,
    older_than: timedelta,
    batch: int = 10_000,
    progress: Callable[[int], None] | None = None,
) -> PruneResult:
    """Delete events and ended sessions older than the cut-off.

    Events: every monthly partition wholly past the cut-off is dropped (a catalog change,
    whatever the month holds); the rest — the older days of the month the cut-off falls in,
    and anything old in the default partition — are deleted in short transactions.
    """
    cutoff = timezone.now() - older_than
    dropped = partitions.partitions_drop_before(cutoff)
    if progress and dropped.rows:
        progress(dropped.rows)
    # The outer condition on the partition key keeps the delete to the partitions it can touch.
    events = dropped.rows + _delete_in_batches(
        "DELETE FROM audit_event WHERE occurred_at < %s AND (id, occurred_at) IN ("
        "  SELECT id, occurred_at FROM audit_event WHERE occurred_at < %s LIMIT %s)",
        [cutoff, cutoff], batch, progress,
    )  # fmt: skip
    partitions.partitions_ensure()
    sessions = _delete_in_batches(
        "DELETE FROM audit_session WHERE sid IN ("
        "  SELECT sid FROM audit_session WHERE ended_at < %s LIMIT %s)",
        [cutoff], batch, progress,
    )  # fmt: skip
    # audit_session has no foreign-key constraint (see the model): rows whose user was deleted
    # while a sync was writing them go here.
    orphans = _delete_in_batches(
        "DELETE FROM audit_session WHERE sid IN ("
        "  SELECT s.sid FROM audit_session s"
        "  WHERE NOT EXISTS (SELECT 1 FROM accounts_user u WHERE u.id = s.user_id) LIMIT %s)",
        [], batch, progress,
    )  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM audit_user_activity a"
            " WHERE NOT EXISTS (SELECT 1 FROM accounts_user u WHERE u.id = a.user_id)"
        )
        orphans += cursor.rowcount
    return PruneResult(
        events=events, sessions=sessions, orphans=orphans, partitions=tuple(dropped.partitions)
    )


def outstanding_tokens_flush() -> int:
    """simplejwt's blacklist tables grow until expired tokens are flushed."""
    deleted, _ = OutstandingToken.objects.filter(expires_at__lte=timezone.now()).delete()
    return deleted
