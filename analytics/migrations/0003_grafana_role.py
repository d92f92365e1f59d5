"""A read-only PostgreSQL role for Grafana: it may SELECT the analytics views, nothing else.

Role `sessionhub_grafana`:
* SELECT on every analytics_* view and materialized view of this schema, and on the
  analytics_setting table (the views' thresholds, read by functions that run as the caller);
* EXECUTE on the analytics_* functions the views call;
* nothing on the audit_*, accounts_*, auth_*, django_* tables, and no write anywhere.
A view runs with its owner's privileges, so reading the views needs nothing on the tables below.

Roles belong to the whole server, not to one database: the dev database and the test database
share this role. So creating it is idempotent, and the reverse migration revokes everything
this database granted, then drops the role only when no other database still grants it
something (otherwise it says so and keeps it).

Login:
* GRAFANA_DB_PASSWORD set when `migrate` runs: the role may LOG IN with that password;
* not set: a new role is created NOLOGIN (usable only through SET ROLE), and an existing role
  keeps the login and password it has. Set one later with
  `ALTER ROLE sessionhub_grafana LOGIN PASSWORD '...'`.
Every session of the role is read-only by default and its statements time out after 30 s.

Whoever runs `migrate` needs CREATEROLE (or superuser) for this migration.
A migration that adds an analytics view later grants it with `grant_read(cursor)`.
"""

import os

from django.db import migrations

ROLE = "sessionhub_grafana"

CREATE_ROLE = f"""
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{ROLE}') THEN
        CREATE ROLE {ROLE} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
    END IF;
EXCEPTION WHEN duplicate_object THEN
    NULL;  -- created meanwhile by the migration of another database of this server
END
$$;
ALTER ROLE {ROLE} SET default_transaction_read_only = on;
ALTER ROLE {ROLE} SET statement_timeout = '30s';
"""

# What the role may read: the analytics views and rollups, and the thresholds they read.
READABLE = """
    SELECT c.oid::regclass AS rel FROM pg_class c
    WHERE c.relnamespace = current_schema()::regnamespace
      AND ((c.relkind IN ('v', 'm') AND c.relname LIKE 'analytics\\_%')
           OR (c.relkind = 'r' AND c.relname = 'analytics_setting'))
"""
FUNCTIONS = """
    SELECT p.oid::regprocedure AS fn FROM pg_proc p
    WHERE p.pronamespace = current_schema()::regnamespace AND p.proname LIKE 'analytics\\_%'
"""

GRANT = f"""
DO $$
DECLARE
    r record;
BEGIN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO {ROLE}', current_database());
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO {ROLE}', current_schema());
    FOR r IN {READABLE} LOOP
        EXECUTE format('GRANT SELECT ON %s TO {ROLE}', r.rel);
    END LOOP;
    FOR r IN {FUNCTIONS} LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO {ROLE}', r.fn);
    END LOOP;
END
$$;
"""

REVOKE_AND_DROP = f"""
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{ROLE}') THEN
        RETURN;
    END IF;
    EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA %I FROM {ROLE}', current_schema());
    EXECUTE format('REVOKE ALL ON ALL FUNCTIONS IN SCHEMA %I FROM {ROLE}', current_schema());
    EXECUTE format('REVOKE ALL ON SCHEMA %I FROM {ROLE}', current_schema());
    EXECUTE format('REVOKE ALL ON DATABASE %I FROM {ROLE}', current_database());
    BEGIN
        DROP ROLE {ROLE};
    EXCEPTION WHEN dependent_objects_still_exist THEN
        RAISE NOTICE 'role {ROLE} kept: another database of this server still grants it privileges';
    END;
END
$$;
"""  # noqa: S608 - built from constants only


def grant_read(cursor) -> None:
    """Grant the role SELECT on every analytics view of this schema (idempotent)."""
    cursor.execute(GRANT)


def forward(apps, schema_editor) -> None:
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(CREATE_ROLE)
        password = os.environ.get("GRAFANA_DB_PASSWORD", "")
        if password:
            # Quoted by the server (format %L): the password never becomes SQL text here.
            cursor.execute(
                "SELECT format('ALTER ROLE %%I LOGIN PASSWORD %%L', %s, %s)", [ROLE, password]
            )
            cursor.execute(cursor.fetchone()[0])
        grant_read(cursor)


def backward(apps, schema_editor) -> None:
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(REVOKE_AND_DROP)


class Migration(migrations.Migration):
    dependencies = [
        ("analytics", "0002_views"),
    ]

    operations = [
        migrations.RunPython(forward, backward),
    ]
