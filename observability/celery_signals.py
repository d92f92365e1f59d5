"""Celery task figures into the shared Redis counters, so Prometheus sees worker activity.

Connected in every process (AnalyticsConfig.ready) but only fire where tasks run.
"""

import logging
import time

from celery import signals

from core.redis import REDIS_UNAVAILABLE, get_redis
from core.rediskeys import keys

from .metrics import TASK_DURATION_BUCKETS, histogram_observe

logger = logging.getLogger(__name__)
_started: dict[str, float] = {}


def _record(name: str, state: str, duration: float | None = None) -> None:
    try:
        pipe = get_redis().pipeline(transaction=False)
        pipe.hincrby(keys.stats(), f"celery_tasks:{name}:{state}", 1)
        if duration is not None:
            histogram_observe(pipe, keys.task_histogram(name), duration, TASK_DURATION_BUCKETS)
        pipe.execute()
    except REDIS_UNAVAILABLE:
        logger.warning("celery task metrics not recorded: redis unavailable")


@signals.task_prerun.connect
def _task_started(task_id=None, **kwargs) -> None:
    _started[task_id] = time.monotonic()


@signals.task_postrun.connect
def _task_finished(task_id=None, task=None, state=None, **kwargs) -> None:
    began = _started.pop(task_id, None)
    if state == "SUCCESS":
        duration = time.monotonic() - began if began is not None else None
        _record(task.name, "succeeded", duration)
    elif state == "FAILURE":
        _record(task.name, "failed")
    elif state == "RETRY":
        _record(task.name, "retried")
