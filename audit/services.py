"""Writes of the audit trail: the sync from Redis, retention, and the flush of old tokens."""

import logging
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta

from django.db import connection, transaction
from django.utils import timezone
from rest_framework_simplejwt.token_blacklist.models import OutstandingToken

from sessionhub import clock
from sessionhub.conf import get_settings
from sessionhub.redis import get_redis
from sessionhub.rediskeys import keys

from . import sync
from .sync import Progress

logger = logging.getLogger(__name__)

# Renewed after every commit; short, so a worker killed mid-run holds the others back briefly.
SYNC_LOCK_SECONDS = 30

RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
RENEW_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


class SyncLock:
    """One sync at a time (beat overlap, two beats, a manual run): SET NX with a token,
    renewed between batches, released only by its holder. Correctness never depends on it —
    the writes are idempotent — it only saves doing the work twice."""

    def __init__(self, ttl: float = SYNC_LOCK_SECONDS) -> None:
        self.key = keys.sync_lock()
        self.token = secrets.token_hex(16)
        self.ttl_ms = int(ttl * 1000)
        self.client = get_redis()

    def acquire(self) -> bool:
        return bool(self.client.set(self.key, self.token, nx=True, px=self.ttl_ms))

    def renew(self) -> None:
        if not self.client.eval(RENEW_LOCK, 1, self.key, self.token, self.ttl_ms):
            raise RuntimeError("sync lock lost (expired while running); stopping this run")

    def release(self) -> None:
        self.client.eval(RELEASE_LOCK, 1, self.key, self.token)


@dataclass(frozen=True)
class SyncResult:
    sessions: int
    events: int
    seconds: float
    backlog_sessions: int
    backlog_events: int
    skipped: bool = False


def sync_backlog() -> tuple[int, int]:
    client = get_redis()
    pipe = client.pipeline(transaction=False)
    pipe.scard(keys.dirty())
    pipe.scard(keys.dirty_inflight())
    pipe.xlen(keys.events())
    dirty, inflight, events = pipe.execute()
    return dirty + inflight, events


def sync_run(*, progress: Progress | None = None, batch_size: int | None = None) -> SyncResult:
    """Move changed sessions and new events from Redis to PostgreSQL (idempotent)."""
    batch_size = batch_size or get_settings().SYNC_BATCH_SIZE
    client = get_redis()
    lock = SyncLock()
    started = time.monotonic()
    if not lock.acquire():
        client.hincrby(keys.stats(), "sync_runs:skipped", 1)
        backlog_sessions, backlog_events = sync_backlog()
        return SyncResult(0, 0, 0.0, backlog_sessions, backlog_events, skipped=True)
    try:
        sessions = sync.sync_sessions(batch_size=batch_size, progress=progress, renew=lock.renew)
        events = sync.sync_events(batch_size=batch_size, progress=progress, renew=lock.renew)
    except Exception:
        client.hincrby(keys.stats(), "sync_runs:error", 1)
        raise
    finally:
        lock.release()
    seconds = time.monotonic() - started
    pipe = client.pipeline(transaction=False)
    pipe.hincrby(keys.stats(), "sync_runs:ok", 1)
    pipe.hset(keys.sync_state(), mapping={"last_success": repr(clock.now()),
                                          "last_seconds": f"{seconds:.3f}"})  # fmt: skip
    pipe.execute()
    backlog_sessions, backlog_events = sync_backlog()
    return SyncResult(sessions, events, seconds, backlog_sessions, backlog_events)


# --- retention -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PruneResult:
    events: int
    sessions: int
    orphans: int = 0


def _delete_in_batches(sql: str, params: list, batch: int, progress) -> int:
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


def audit_prune(*, older_than: timedelta, batch: int = 10_000, progress=None) -> PruneResult:
    """Delete events and ended sessions older than the cut-off, in short transactions."""
    cutoff = timezone.now() - older_than
    events = _delete_in_batches(
        "DELETE FROM audit_event WHERE id IN ("
        "  SELECT id FROM audit_event WHERE occurred_at < %s LIMIT %s)",
        [cutoff], batch, progress,
    )  # fmt: skip
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
    return PruneResult(events=events, sessions=sessions, orphans=orphans)


def outstanding_tokens_flush() -> int:
    """simplejwt's blacklist tables grow until expired tokens are flushed."""
    deleted, _ = OutstandingToken.objects.filter(expires_at__lte=timezone.now()).delete()
    return deleted
