"""analytics/sql/*.sql is the current SQL of every analytics view: the migrated database
defines each view exactly as its file does, and no view lacks a file.

Migrations keep their own copy of the SQL they apply (a migration never changes once
released); the files are where a reader finds today's definition without replaying
migrations 0002 → 0004 → 0005 → 0007.
"""

import re
from pathlib import Path

import pytest
from django.db import connection, transaction

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
CREATE = re.compile(
    r"^CREATE (?P<kind>VIEW|MATERIALIZED VIEW) (?P<name>\w+) AS\n(?P<body>.*);\s*$", re.S
)

pytestmark = pytest.mark.django_db


def _files() -> dict[str, re.Match]:
    found = {}
    for path in sorted(SQL_DIR.glob("*.sql")):
        text = "\n".join(
            line for line in path.read_text().splitlines() if not line.startswith("--")
        )
        match = CREATE.match(text.strip() + "\n")
        assert match, f"{path.name}: expected one CREATE [MATERIALIZED] VIEW … AS …;"
        assert match["name"] == path.stem, path.name
        found[path.stem] = match
    return found


def _database_views() -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT viewname, 'VIEW' FROM pg_views "
            "WHERE schemaname = 'public' AND viewname LIKE 'analytics%%' "
            "UNION ALL SELECT matviewname, 'MATERIALIZED VIEW' FROM pg_matviews "
            "WHERE schemaname = 'public' AND matviewname LIKE 'analytics%%'"
        )
        return dict(cursor.fetchall())


def test_every_view_has_a_file_of_its_kind():
    assert {name: m["kind"] for name, m in _files().items()} == _database_views()


def _printed(cursor, select: str) -> str:
    """`select` as PostgreSQL prints it once it has parsed it (as a temporary view)."""
    cursor.execute(f"CREATE TEMPORARY VIEW sql_file_check AS {select}")
    cursor.execute("SELECT pg_get_viewdef('sql_file_check'::regclass, true)")
    (printed,) = cursor.fetchone()
    cursor.execute("DROP VIEW sql_file_check")
    return printed


def test_each_file_is_the_migrated_definition():
    # Both definitions go through the same parse and print (the printed form of a few casts
    # is not a fixed point), so the two texts are equal exactly when the definitions are.
    for name, match in _files().items():
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT pg_get_viewdef(%s::regclass, true)", [name])
            (migrated,) = cursor.fetchone()
            assert _printed(cursor, match["body"]) == _printed(cursor, migrated), name
