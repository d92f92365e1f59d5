"""The one source of "now" for session logic, so tests can move time without sleeping."""

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime


def now() -> float:
    """Seconds since the epoch (UTC)."""
    return time.time()


def to_datetime(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


class SimulatedClock:
    """A clock its owner moves by hand (`value`), read through `now()` while it is in force."""

    def __init__(self, start: float) -> None:
        self.value = start

    def __call__(self) -> float:
        return self.value


@contextmanager
def simulated(start: float) -> Iterator[SimulatedClock]:
    """Session logic, in this whole process, reads a simulated clock while the block runs: the
    demo replays days of traffic in seconds through the real code paths. Process-wide on
    purpose (the tracker's flushes read it too); not for a server that is serving requests."""
    global now
    clock = SimulatedClock(start)
    real = now
    now = clock
    try:
        yield clock
    finally:
        now = real
