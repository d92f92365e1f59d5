from celery import shared_task
from django.db import InterfaceError, OperationalError

from analytics import services


@shared_task(
    acks_late=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=5,
    max_retries=3,
    soft_time_limit=280,
    time_limit=300,
)
def refresh_analytics() -> dict[str, float]:
    return services.analytics_refresh().seconds
