from celery import shared_task

from sessionhub import services


@shared_task(ignore_result=True, soft_time_limit=10, time_limit=15)
def heartbeat() -> None:
    """Beat → broker → worker → Redis: proves the whole Celery path is alive."""
    services.celery_heartbeat_record()
