"""The report pages read the ground-truth workload as the analytics tests do."""

from analytics.tests.conftest import analyst, manager, staff, world  # noqa: F401
