"""Fixtures of the Grafana tests: the ground-truth workload and queries run as Grafana's role
(background processes: the shared `background` fixture of tests/conftest.py)."""

import pytest
from django.db import connection, transaction

# The workload of audit/tests/test_ground_truth.py, whose every number is written down there.
from audit.tests.test_ground_truth import NOW, world  # noqa: F401

from .helpers import ROLE


class GrafanaSql:
    """Runs SQL on the test connection as Grafana would: under the read-only role."""

    def run(self, sql: str) -> tuple[list[str], list[tuple]]:
        # A savepoint: a refused statement rolls back to it, SET ROLE included.
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"SET ROLE {ROLE}")
            cursor.execute(sql)
            columns = [column.name for column in cursor.description]
            rows = cursor.fetchall()
            cursor.execute("RESET ROLE")
        return columns, rows


@pytest.fixture
def grafana_sql(world):  # noqa: F811 - the imported fixture
    """The workload in place, "now" pinned for the views, the rollups refreshed."""
    from analytics import services

    with connection.cursor() as cursor:
        cursor.execute(f"SET sessionhub.now = '{NOW}+00:00'")
    services.analytics_refresh()
    yield GrafanaSql()
    with connection.cursor() as cursor:
        cursor.execute("RESET sessionhub.now")
