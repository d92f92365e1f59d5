from celery import shared_task

from accounts import services


@shared_task(ignore_result=True, soft_time_limit=50, time_limit=60, acks_late=True)
def sessions_expire() -> dict[str, int]:
    """End sessions past their idle/absolute timeout (idempotent: safe to run twice)."""
    return services.sessions_expire_due()


@shared_task(ignore_result=True, soft_time_limit=20, time_limit=25)
def lockout_periods_close() -> int:
    """Write the lockout_lifted event of each lock period that has ended (each is written once:
    the script takes the period as it writes its event)."""
    return services.lockout_periods_close()


@shared_task(ignore_result=True, soft_time_limit=50, time_limit=60, acks_late=True)
def session_ends_apply() -> int:
    """Apply in Redis the ends recorded in PostgreSQL (idempotent: each session ends once)."""
    return services.session_ends_apply()


@shared_task(ignore_result=True, soft_time_limit=240, time_limit=300, acks_late=True)
def sessions_reconcile() -> int:
    """End live sessions of inactive or deleted users, however they reached Redis."""
    return services.sessions_reconcile()
