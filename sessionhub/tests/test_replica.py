"""Without DATABASE_REPLICA_URL the router changes nothing: every read on the primary, report
code included. (With a replica: tests/scale/test_postgres_replica.py, real servers.)"""

import pytest
from django.db import DEFAULT_DB_ALIAS, router

from analytics.models import PowerUser
from audit.models import AuditSession
from core.replica import replica_reads, reports_db


def test_no_replica_every_read_and_write_on_the_primary():
    with replica_reads():
        assert reports_db() == DEFAULT_DB_ALIAS
        assert router.db_for_read(PowerUser) == DEFAULT_DB_ALIAS
    assert router.db_for_read(AuditSession) == DEFAULT_DB_ALIAS
    assert router.db_for_write(AuditSession) == DEFAULT_DB_ALIAS


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
def test_replica_reads_is_scoped(settings):
    # Only the routing decision is under test: no query goes through the added alias.
    settings.DATABASES = {**settings.DATABASES, "replica": settings.DATABASES["default"]}
    assert reports_db() == DEFAULT_DB_ALIAS
    with replica_reads():
        assert reports_db() == "replica"
        assert router.db_for_read(PowerUser) == "replica"
        assert router.db_for_write(PowerUser) == DEFAULT_DB_ALIAS
    assert reports_db() == DEFAULT_DB_ALIAS
    assert router.db_for_read(PowerUser) == DEFAULT_DB_ALIAS
