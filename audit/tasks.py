import redis
from celery import shared_task
from django.db import InterfaceError, OperationalError

from audit import partitions, services
from core.conf import get_settings
from core.redis import REDIS_UNAVAILABLE
from core.rediskeys import keys

# Outages we wait out; anything else is a bug and must not be retried in a loop.
TRANSIENT = (
    OperationalError,
    InterfaceError,
    redis.ConnectionError,
    redis.TimeoutError,
    *REDIS_UNAVAILABLE,
)


SYNC_TASK_OPTIONS = {
    "acks_late": True,  # safe: the sync is idempotent, a redelivery changes nothing
    "autoretry_for": TRANSIENT,
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "retry_jitter": True,
    "max_retries": 8,
    "soft_time_limit": 110,
    "time_limit": 120,
}


def _summary(result: services.SyncResult) -> dict:
    return {
        "sessions": result.sessions,
        "events": result.events,
        "skipped": result.skipped,
        "quarantined": result.quarantined_sessions + result.quarantined_events,
        "lost": result.lost,
    }


@shared_task(bind=True, **SYNC_TASK_OPTIONS)
def sync_sessions(self) -> dict:
    """Beat's sync. With one shard it runs here; with several it sends one `sync_shard` task
    per shard, so that any number of workers share them and a shard whose Redis node is
    failing over (its task retrying) holds up no other."""
    if keys.shard_count > 1:
        expires = get_settings().SYNC_INTERVAL
        for shard in keys.shards():
            sync_shard.apply_async(args=[shard], expires=expires)
        return {"shards": keys.shard_count}
    return _summary(services.sync_run())


@shared_task(bind=True, **SYNC_TASK_OPTIONS)
def sync_shard(self, shard: int) -> dict:
    """One shard's sync: its own lock, cursor and acknowledgement (audit.sync)."""
    return {"shard": shard, **_summary(services.sync_run(shard=shard))}


@shared_task(acks_late=True, soft_time_limit=3000, time_limit=3600)
def prune_audit() -> dict:
    from datetime import timedelta

    from core.conf import get_settings

    result = services.audit_prune(older_than=timedelta(days=get_settings().AUDIT_RETENTION_DAYS))
    return {
        "events": result.events,
        "sessions": result.sessions,
        "orphans": result.orphans,
        "partitions_dropped": len(result.partitions),
    }


@shared_task(acks_late=True, soft_time_limit=300, time_limit=360)
def audit_partitions_ensure() -> list[str]:
    """Create audit_event's monthly partitions ahead of time (idempotent)."""
    return partitions.partitions_ensure()


@shared_task(acks_late=True, soft_time_limit=300, time_limit=360)
def flush_expired_tokens() -> int:
    return services.outstanding_tokens_flush()
