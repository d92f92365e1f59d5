from celery import shared_task

from observability import services


# Named explicitly: the name is the `task` label of the Celery metrics, whatever module holds it.
@shared_task(
    name="sessionhub.tasks.heartbeat", ignore_result=True, soft_time_limit=10, time_limit=15
)
def heartbeat() -> None:
    """Beat → broker → worker → Redis: proves the whole Celery path is alive."""
    services.celery_heartbeat_record()
