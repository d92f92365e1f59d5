"""Reads from a PostgreSQL streaming replica (DATABASE_REPLICA_URL), for the reports only.

Only code that asks for it reads from the replica: a report view runs inside
`replica_reads()`, and the database router sends that code's reads to the `replica` alias.
Everything else (logins, refreshes, session ends, the sync, the admin's change pages) reads
and writes the primary, so nothing ever misses its own write because the replica lags.
Without a replica configured every read goes to the primary, exactly as before.
"""

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connection, connections
from django.db.models import Model

logger = logging.getLogger(__name__)

REPLICA = "replica"
T = TypeVar("T")
# After the replica failed a report, this process reads reports from the primary for this
# long before it tries the replica again.
REPLICA_RETRY_SECONDS = 30.0

_reports = ContextVar("sessionhub_replica_reads", default=False)
_replica_down_until = 0.0


def replica_configured() -> bool:
    return REPLICA in settings.DATABASES


def replica_usable() -> bool:
    return replica_configured() and time.monotonic() >= _replica_down_until


def reports_db() -> str:
    """The alias report code reads from right now."""
    return REPLICA if _reports.get() and replica_usable() else DEFAULT_DB_ALIAS


def _replica_answers() -> bool:
    replica = connections[REPLICA]
    try:
        replica.close_if_unusable_or_obsolete()
        with replica.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError:
        replica.close()
        return False
    return True


def read_reports(read: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """`read(...)` with its reads on the replica; when the replica is away, again on the
    primary (and the primary serves this process's reports for REPLICA_RETRY_SECONDS), so a
    replica outage slows the first report down instead of failing it."""
    global _replica_down_until
    if not replica_usable():
        return read(*args, **kwargs)
    try:
        with replica_reads():
            return read(*args, **kwargs)
    except DatabaseError:
        if _replica_answers():
            raise  # the replica is fine: the error is the report's own
        logger.warning("replica unavailable: reports read the primary")
        _replica_down_until = time.monotonic() + REPLICA_RETRY_SECONDS
    return read(*args, **kwargs)


@contextmanager
def replica_reads() -> Iterator[None]:
    """Reads in this block go to the replica. Only for code that writes nothing and reads back
    no write of its own; a queryset evaluated after the block must be bound with `.using()`."""
    token = _reports.set(True)
    try:
        yield
    finally:
        _reports.reset(token)


class ReplicaRouter:
    """DATABASE_ROUTERS entry: report reads to the replica, all else to the primary."""

    def db_for_read(self, model: type[Model], **hints: Any) -> str | None:
        # None outside report code: Django's own choice (the database an instance came from,
        # else the primary), exactly as without a router.
        return REPLICA if reports_db() == REPLICA else None

    def db_for_write(self, model: type[Model], **hints: Any) -> str:
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1: Model, obj2: Model, **hints: Any) -> bool:
        # Both aliases hold the same rows (the replica is a copy of the primary).
        return True

    def allow_migrate(
        self, db: str, app_label: str, model_name: str | None = None, **hints: Any
    ) -> bool:
        # The replica gets its schema by streaming from the primary, never by migrating.
        return db == DEFAULT_DB_ALIAS


@dataclass(frozen=True)
class ReplicaLag:
    """How far the reports' replica trails the primary (None: its state is unknown)."""

    available: bool
    is_replica: bool = True
    seconds: float | None = None  # since the last replayed commit, 0 when caught up
    bytes_behind: int | None = None  # WAL the primary wrote that the replica has not replayed


# Replay lag in time: 0 when everything received is replayed (an idle primary is not "lag"),
# else the age of the last replayed commit.
_REPLICA_LAG_SQL = """
SELECT pg_is_in_recovery(),
       CASE WHEN NOT pg_is_in_recovery() THEN NULL
            WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
            ELSE extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())
       END,
       CASE WHEN pg_is_in_recovery()
            THEN greatest(pg_wal_lsn_diff(%s::pg_lsn, pg_last_wal_replay_lsn()), 0)
       END
"""


def replica_lag() -> ReplicaLag | None:
    """The replica's lag (one query on each database), None when no replica is configured."""
    if not replica_configured():
        return None
    replica = connections[REPLICA]
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_current_wal_lsn()::text")
            (primary_lsn,) = cursor.fetchone()
        with replica.cursor() as cursor:
            cursor.execute(_REPLICA_LAG_SQL, [primary_lsn])
            in_recovery, seconds, behind = cursor.fetchone()
    except DatabaseError as exc:
        logger.warning("replica lag unknown (%s)", type(exc).__name__)
        replica.close_if_unusable_or_obsolete()
        return ReplicaLag(available=False)
    return ReplicaLag(
        available=True,
        is_replica=bool(in_recovery),
        seconds=None if seconds is None else max(float(seconds), 0.0),
        bytes_behind=None if behind is None else int(behind),
    )
