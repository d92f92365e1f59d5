"""Celery wiring end to end: beat schedules, the broker carries, a real worker runs the task."""

import os
import subprocess
import sys
import time

import pytest
from django.conf import settings

from core.redis import get_redis
from core.rediskeys import keys

pytestmark = pytest.mark.slow


def test_beat_schedules_heartbeat_and_a_real_worker_runs_it():
    redis = get_redis()
    assert redis.get(keys.celery_heartbeat()) is None
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "sessionhub.settings.test",
        "CELERY_HEARTBEAT_INTERVAL": "1",
    }
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "--app",
            "sessionhub",
            "worker",
            "--beat",
            "--concurrency",
            "1",
            "--pool",
            "solo",
            "--loglevel",
            "WARNING",
            "--schedule",
            str(settings.BASE_DIR / ".local" / "test-celerybeat-schedule"),
        ],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        seen = []
        while time.monotonic() < deadline and len(seen) < 2:
            stamp = redis.get(keys.celery_heartbeat())
            if stamp is not None and stamp not in seen:
                seen.append(stamp)
            time.sleep(0.2)
    finally:
        worker.terminate()
        output = worker.communicate(timeout=30)[0]
    # Two distinct beats prove the schedule repeats, not a one-off call.
    assert len(seen) == 2, output
    assert float(seen[1]) > float(seen[0])
