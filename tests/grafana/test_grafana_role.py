"""The read-only role Grafana connects as (analytics/migrations/0003_grafana_role.py)."""

import importlib

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction

from .helpers import ROLE

MIGRATION = importlib.import_module("analytics.migrations.0003_grafana_role")

ANALYTICS_VIEWS = {
    "analytics_user_activity",
    "analytics_power_users",
    "analytics_idle_users",
    "analytics_idle_user_count",
    "analytics_sessions_by_status",
    "analytics_failed_logins_hourly",
    "analytics_suspicious_ips",
    "analytics_session_durations",
    "analytics_daily",
    "analytics_user_day",
    "analytics_user_stats",
    "analytics_session_duration_day",
}
READABLE = ANALYTICS_VIEWS | {"analytics_setting"}
WRITES = ("INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")


def fetch(sql: str, params=None) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def execute(sql: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql)


def relations_with(privilege: str) -> set[str]:
    """Relations of the schema (tables, views, materialized views...) the role holds it on."""
    rows = fetch(
        "SELECT c.relname FROM pg_class c "
        "WHERE c.relnamespace = current_schema()::regnamespace "
        "AND c.relkind IN ('r', 'v', 'm', 'p', 'f') "
        "AND has_table_privilege(%s, c.oid, %s)",
        [ROLE, privilege],
    )
    return {name for (name,) in rows}


def as_role(sql: str) -> list[tuple]:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET ROLE {ROLE}")
        cursor.execute(sql)
        rows = cursor.fetchall() if cursor.description else []
        cursor.execute("RESET ROLE")
    return rows


def refused(sql: str) -> str:
    """The error PostgreSQL raises when the role runs `sql` (the test fails if none)."""
    with pytest.raises(DatabaseError) as raised:
        as_role(sql)
    return str(raised.value)


def role_attributes() -> tuple:
    [row] = fetch(
        "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, "
        "rolcanlogin, rolconfig FROM pg_roles WHERE rolname = %s",
        [ROLE],
    )
    return row


pytestmark = pytest.mark.django_db


def test_the_role_exists_with_no_power_and_read_only_sessions():
    superuser, createdb, createrole, replication, bypassrls, _login, config = role_attributes()
    assert (superuser, createdb, createrole, replication, bypassrls) == (False,) * 5
    assert "default_transaction_read_only=on" in config
    assert "statement_timeout=30s" in config


def test_it_may_select_exactly_the_analytics_views_and_settings():
    assert relations_with("SELECT") == READABLE


def test_it_may_write_nothing_anywhere():
    for privilege in WRITES:
        assert relations_with(privilege) == set(), privilege
    [(create_in_schema,)] = fetch(
        "SELECT has_schema_privilege(%s, current_schema(), 'CREATE')", [ROLE]
    )
    assert create_in_schema is False


def test_it_reads_every_analytics_view_for_real():
    for name in sorted(READABLE):
        assert as_role(f"SELECT count(*) FROM {name}")[0][0] >= 0, name  # noqa: S608
    # The functions the views call, as Grafana's own queries may.
    assert as_role("SELECT analytics_now() IS NOT NULL, analytics_utc_today() IS NOT NULL") == [
        (True, True)
    ]


@pytest.mark.parametrize(
    "table", ["audit_event", "audit_session", "audit_user_activity", "accounts_user", "auth_group"]
)
def test_it_cannot_read_the_audit_trail_or_the_accounts(table):
    assert "permission denied" in refused(f"SELECT * FROM {table} LIMIT 1")  # noqa: S608


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO analytics_setting (name, value) VALUES ('grafana_was_here', 1)",
        "UPDATE analytics_setting SET value = value + 1",
        "DELETE FROM analytics_setting",
        "TRUNCATE analytics_setting",
        "REFRESH MATERIALIZED VIEW analytics_session_duration_day",
        "CREATE TABLE grafana_was_here (id int)",
    ],
)
def test_it_cannot_write_analytics_setting_or_anything_else(statement):
    message = refused(statement)
    assert "permission denied" in message or "must be owner" in message, message


def test_reading_the_views_does_not_need_the_tables_below_them(django_user_model):
    django_user_model.objects.create_user(username="zoe", password="x")
    rows = as_role("SELECT username, never_active FROM analytics_user_activity")
    assert ("zoe", True) in rows  # read through the view, accounts_user itself is refused above


# --- the migration: login only with a password, idempotent ---------------------------------------


def migrate_forward() -> None:
    with connection.schema_editor() as editor:
        MIGRATION.forward(None, editor)


def test_without_a_password_a_role_keeps_its_login_as_it_is(monkeypatch):
    monkeypatch.delenv("GRAFANA_DB_PASSWORD", raising=False)
    # Everything below is rolled back with the test's transaction, ALTER ROLE included.
    execute(f"ALTER ROLE {ROLE} NOLOGIN")
    migrate_forward()
    assert role_attributes()[5] is False
    execute(f"ALTER ROLE {ROLE} LOGIN")
    migrate_forward()
    assert role_attributes()[5] is True
    assert relations_with("SELECT") == READABLE  # and a second run grants the same


def test_with_a_password_the_role_may_log_in_with_it(monkeypatch):
    monkeypatch.setenv("GRAFANA_DB_PASSWORD", "it's a 'quoted' secret; DROP ROLE x")
    execute(f"ALTER ROLE {ROLE} NOLOGIN PASSWORD NULL")
    migrate_forward()
    [(can_login, has_password)] = fetch(
        "SELECT rolcanlogin, rolpassword IS NOT NULL FROM pg_authid WHERE rolname = %s", [ROLE]
    )
    assert (can_login, has_password) == (True, True)


# --- the reverse migration -----------------------------------------------------------------------


def other_databases_granting() -> set[str]:
    """Databases of this server, other than ours, holding privileges granted to the role."""
    rows = fetch(
        "SELECT DISTINCT d.datname FROM pg_shdepend s JOIN pg_database d "
        "ON d.oid = CASE WHEN s.dbid = 0 THEN s.objid ELSE s.dbid END "
        "WHERE s.refobjid = (SELECT oid FROM pg_roles WHERE rolname = %s) "
        "AND s.deptype = 'a' AND d.datname <> current_database()",
        [ROLE],
    )
    return {name for (name,) in rows}


def role_exists() -> bool:
    return bool(fetch("SELECT 1 FROM pg_roles WHERE rolname = %s", [ROLE]))


@pytest.mark.django_db(transaction=True)
def test_the_reverse_migration_revokes_everything_and_drops_the_role_unless_shared():
    call_command("migrate", "analytics", "0002", verbosity=0)
    try:
        if role_exists():
            # Kept only because another database of the server still grants it something.
            assert other_databases_granting(), "the role was kept without a reason"
            assert relations_with("SELECT") == set()
            [(database_acl, schema_acl)] = fetch(
                "SELECT (SELECT coalesce(datacl::text, '') FROM pg_database "
                "        WHERE datname = current_database()), "
                "       (SELECT coalesce(nspacl::text, '') FROM pg_namespace "
                "        WHERE nspname = current_schema())"
            )
            assert ROLE not in database_acl and ROLE not in schema_acl
    finally:
        call_command("migrate", verbosity=0)  # every app: audit 0004 was unapplied too
    assert relations_with("SELECT") == READABLE
