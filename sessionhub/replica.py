"""Reads from a PostgreSQL streaming replica (DATABASE_REPLICA_URL), for the reports only.

Only code that asks for it reads from the replica: a report view runs inside
`replica_reads()`, and the database router sends that code's reads to the `replica` alias.
Everything else (logins, refreshes, session ends, the sync, the admin's change pages) reads
and writes the primary, so nothing ever misses its own write because the replica lags.
Without a replica configured every read goes to the primary, exactly as before.
"""

import functools
from contextlib import contextmanager
from contextvars import ContextVar

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS

REPLICA = "replica"

_reports = ContextVar("sessionhub_replica_reads", default=False)


def replica_configured() -> bool:
    return REPLICA in settings.DATABASES


def reports_db() -> str:
    """The alias report code reads from right now."""
    return REPLICA if _reports.get() and replica_configured() else DEFAULT_DB_ALIAS


@contextmanager
def replica_reads():
    token = _reports.set(True)
    try:
        yield
    finally:
        _reports.reset(token)


def reads_from_replica(view):
    """A report view whose queries may go to the replica (no writes, nothing of its own to
    read back). Streamed bodies must bind their querysets with `.using(reports_db())`."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        with replica_reads():
            return view(*args, **kwargs)

    return wrapper


class ReplicaRouter:
    """DATABASE_ROUTERS entry: report reads to the replica, all else to the primary."""

    def db_for_read(self, model, **hints):
        return reports_db()

    def db_for_write(self, model, **hints):
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1, obj2, **hints):
        # Both aliases hold the same rows (the replica is a copy of the primary).
        return True

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        # The replica gets its schema by streaming from the primary, never by migrating.
        return db == DEFAULT_DB_ALIAS
