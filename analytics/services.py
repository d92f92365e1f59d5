"""Writes of the analytics layer: thresholds for the views, and the rollup refresh."""

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.db import connection, transaction

from core import clock
from core.conf import get_settings
from core.redis import REDIS_UNAVAILABLE, get_redis
from core.rediskeys import keys

# In dependency order: each reads the one before. analytics_user_day, which they read, is kept
# by the sync itself, and analytics_user_stats by triggers (analytics.rollups): the refresh only
# moves the latter's windows to the current time (rollups.roll).
MATERIALIZED_VIEWS = ("analytics_session_duration_day",)


def thresholds_sync() -> None:
    """Copy the configured thresholds where the SQL views (and Grafana) can read them."""
    conf = get_settings()
    values = {
        "active_window_seconds": conf.ACTIVE_WINDOW,
        "recent_window_seconds": conf.RECENT_WINDOW,
        "idle_user_days": conf.IDLE_USER_DAYS,
        "suspicious_ip_min_failures": conf.SUSPICIOUS_IP_MIN_FAILURES,
        "suspicious_ip_min_usernames": conf.SUSPICIOUS_IP_MIN_USERNAMES,
    }
    with connection.cursor() as cursor:
        for name, value in values.items():
            cursor.execute(
                "INSERT INTO analytics_setting (name, value) VALUES (%s, %s) "
                "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value "
                "WHERE analytics_setting.value IS DISTINCT FROM EXCLUDED.value",
                [name, value],
            )


@dataclass(frozen=True)
class RefreshResult:
    seconds: dict[str, float]


def analytics_refresh(*, progress: Callable[[str, float], None] | None = None) -> RefreshResult:
    """Fold what the sync appended to analytics_user_day and has not folded yet (a run that
    stopped before its fold), move the kept per-user figures' windows to now, store today's
    daily row, then refresh the materialized views CONCURRENTLY: readers keep the old rows
    until the new ones commit."""
    from . import rollups

    thresholds_sync()
    rollups.fold()
    timings = {}
    started = time.monotonic()
    rollups.roll()
    timings["analytics_user_stats (roll)"] = time.monotonic() - started
    if progress:
        progress("analytics_user_stats (roll)", timings["analytics_user_stats (roll)"])
    started = time.monotonic()
    rollups.daily_refresh()
    timings["analytics_daily (today)"] = time.monotonic() - started
    if progress:
        progress("analytics_daily (today)", timings["analytics_daily (today)"])
    for name in MATERIALIZED_VIEWS:
        started = time.monotonic()
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"REFRESH MATERIALIZED VIEW CONCURRENTLY {name}")
        timings[name] = time.monotonic() - started
        if progress:
            progress(name, timings[name])
    # The admin says how old the rolled-up figures are (selectors.freshness). With Redis away
    # the rollups are fresh all the same; only their age is unknown meanwhile.
    with contextlib.suppress(*REDIS_UNAVAILABLE):
        get_redis().hset(keys.sync_state(), "rollups_refreshed_at", repr(clock.now()))
    return RefreshResult(timings)
