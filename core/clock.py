"""The one source of "now" for session logic, so tests can move time without sleeping."""

import time
from datetime import UTC, datetime


def now() -> float:
    """Seconds since the epoch (UTC)."""
    return time.time()


def to_datetime(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)
