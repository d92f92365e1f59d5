"""Reads from a PostgreSQL streaming replica (DATABASE_REPLICA_URL), for the reports only.

Only code that asks for it reads from the replica: a report view runs inside
`replica_reads()`, and the database router sends that code's reads to the `replica` alias.
Everything else (logins, refreshes, session ends, the sync, the admin's change pages) reads
and writes the primary, so nothing ever misses its own write because the replica lags.
Without a replica configured every read goes to the primary, exactly as before.
"""

import logging
import time
from contextlib import contextmanager
from contextvars import ContextVar

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections

logger = logging.getLogger(__name__)

REPLICA = "replica"
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


def read_reports(read, /, *args, **kwargs):
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
def replica_reads():
    """Reads in this block go to the replica. Only for code that writes nothing and reads back
    no write of its own; a queryset evaluated after the block must be bound with `.using()`."""
    token = _reports.set(True)
    try:
        yield
    finally:
        _reports.reset(token)


class ReplicaRouter:
    """DATABASE_ROUTERS entry: report reads to the replica, all else to the primary."""

    def db_for_read(self, model, **hints):
        # None outside report code: Django's own choice (the database an instance came from,
        # else the primary), exactly as without a router.
        return REPLICA if reports_db() == REPLICA else None

    def db_for_write(self, model, **hints):
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1, obj2, **hints):
        # Both aliases hold the same rows (the replica is a copy of the primary).
        return True

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        # The replica gets its schema by streaming from the primary, never by migrating.
        return db == DEFAULT_DB_ALIAS
