import redis
from celery import shared_task
from django.db import InterfaceError, OperationalError

from audit import partitions, services

# Outages we wait out; anything else is a bug and must not be retried in a loop.
TRANSIENT = (OperationalError, InterfaceError, redis.ConnectionError, redis.TimeoutError)


@shared_task(
    bind=True,
    acks_late=True,  # safe: the sync is idempotent, a redelivery changes nothing
    autoretry_for=TRANSIENT,
    retry_backoff=2,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=8,
    soft_time_limit=110,
    time_limit=120,
)
def sync_sessions(self) -> dict:
    result = services.sync_run()
    return {
        "sessions": result.sessions,
        "events": result.events,
        "skipped": result.skipped,
        "quarantined": result.quarantined_sessions + result.quarantined_events,
        "lost": result.lost,
    }


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
