"""audit_event becomes a table partitioned by month of `occurred_at` (declarative partitioning).

Retention then drops a month as a whole partition instead of deleting its rows one by one
(bench_prune: the figures are in bench/README.md). PostgreSQL cannot turn a table into a
partitioned one in place, so the rows are copied, under an exclusive lock, into a new
partitioned `audit_event` with one partition per month that holds rows, per month of the
retention window and two months ahead, and a DEFAULT partition for anything outside them.
Every row keeps its id; the id sequence goes on after the largest.

What changes with the partition key (a unique key of a partitioned table must contain it):

* primary key `(id, occurred_at)` instead of `(id)`; ids stay unique (one sequence);
* unique `(stream_id, occurred_at)` instead of `(stream_id)`: a stream entry always carries the
  same time, so the sync's `ON CONFLICT (stream_id, occurred_at) DO NOTHING` still stores each
  event once however often it is delivered;
* a partitioned table cannot have an identity column before PostgreSQL 17: `id` takes its
  default from a sequence owned by the column instead.

The other indexes (including ones other apps' migrations created, such as
audit_event_failed_login_hour), foreign keys, comments and grants are carried over as they
are, and the views and materialized views that read audit_event (found in the catalog, with
their indexes, comments and grants) are recreated on the new table. Reversible the same way.

Time: the copy and the index builds, under the lock: 25 s for 2M events on a 2-core machine.
"""

import datetime as dt

from django.db import migrations, models

TABLE = "audit_event"
OLD = "audit_event_unpartitioned"
SEQUENCE = "audit_event_id_seq"
AHEAD_MONTHS = 2
BEHIND_DAYS = 92

DEPENDENT_VIEWS = """
WITH RECURSIVE deps(oid, depth) AS (
    SELECT DISTINCT r.ev_class, 1
    FROM pg_depend d JOIN pg_rewrite r ON d.objid = r.oid
    WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = %s::regclass
      AND r.ev_class <> %s::regclass
    UNION
    SELECT r.ev_class, deps.depth + 1
    FROM deps JOIN pg_depend d ON d.refobjid = deps.oid JOIN pg_rewrite r ON d.objid = r.oid
    WHERE d.classid = 'pg_rewrite'::regclass AND r.ev_class <> deps.oid
)
SELECT c.oid, quote_ident(c.relname), c.relkind, max(deps.depth), pg_get_viewdef(c.oid),
       c.relispopulated, obj_description(c.oid, 'pg_class')
FROM deps JOIN pg_class c ON c.oid = deps.oid
GROUP BY c.oid
ORDER BY max(deps.depth), c.relname
"""

GRANTS = """
SELECT a.privilege_type, coalesce(quote_ident(r.rolname), 'PUBLIC')
FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a
LEFT JOIN pg_roles r ON r.oid = a.grantee
WHERE c.oid = %s::regclass AND a.grantee <> c.relowner
"""

# Indexes that no constraint owns (the keys are recreated separately: they change).
PLAIN_INDEXES = """
SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i
WHERE i.indrelid = %s::regclass
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
ORDER BY i.indexrelid
"""

CARRIED_CONSTRAINTS = """
SELECT quote_ident(conname), pg_get_constraintdef(oid) FROM pg_constraint
WHERE conrelid = %s::regclass AND contype IN ('f', 'c') AND coninhcount = 0
ORDER BY conname
"""


def _grants(cursor, relation: str) -> list[str]:
    cursor.execute(GRANTS, [relation])
    return [f"GRANT {privilege} ON {relation} TO {grantee}" for privilege, grantee in cursor]


def _capture(cursor) -> dict:
    """Everything of audit_event and its readers that the swap must put back."""
    cursor.execute(DEPENDENT_VIEWS, [TABLE, TABLE])
    views = []
    for oid, name, kind, _depth, definition, populated, comment in cursor.fetchall():
        cursor.execute(PLAIN_INDEXES, [oid])
        indexes = [row[0] for row in cursor.fetchall()]
        views.append(
            {
                "name": name,
                "materialized": kind == "m",
                "definition": definition.rstrip().rstrip(";"),
                "populated": populated,
                "comment": comment,
                "indexes": indexes,
                "grants": _grants(cursor, name),
            }
        )
    cursor.execute(PLAIN_INDEXES, [TABLE])
    # A partitioned table's own index reads "ON ONLY"; recreated, it must cover the partitions.
    indexes = [row[0].replace(" ON ONLY ", " ON ") for row in cursor.fetchall()]
    cursor.execute(CARRIED_CONSTRAINTS, [TABLE])
    constraints = cursor.fetchall()
    cursor.execute("SELECT obj_description(%s::regclass, 'pg_class')", [TABLE])
    comment = cursor.fetchone()[0]
    return {
        "views": views,
        "indexes": indexes,
        "constraints": constraints,
        "comment": comment,
        "grants": _grants(cursor, TABLE),
    }


def _drop_views(cursor, captured: dict) -> None:
    for view in reversed(captured["views"]):
        kind = "MATERIALIZED VIEW" if view["materialized"] else "VIEW"
        cursor.execute(f"DROP {kind} {view['name']}")


def _restore(cursor, captured: dict) -> None:
    for sql in captured["indexes"]:
        cursor.execute(sql)
    for name, definition in captured["constraints"]:
        cursor.execute(f"ALTER TABLE {TABLE} ADD CONSTRAINT {name} {definition}")
    if captured["comment"] is not None:
        cursor.execute(f"COMMENT ON TABLE {TABLE} IS %s", [captured["comment"]])
    for grant in captured["grants"]:
        cursor.execute(grant)
    for view in captured["views"]:
        if view["materialized"]:
            data = "WITH DATA" if view["populated"] else "WITH NO DATA"
            cursor.execute(
                f"CREATE MATERIALIZED VIEW {view['name']} AS {view['definition']} {data}"
            )
        else:
            cursor.execute(f"CREATE VIEW {view['name']} AS {view['definition']}")
        for sql in view["indexes"]:
            cursor.execute(sql)
        if view["comment"] is not None:
            kind = "MATERIALIZED VIEW" if view["materialized"] else "VIEW"
            cursor.execute(f"COMMENT ON {kind} {view['name']} IS %s", [view["comment"]])
        for grant in view["grants"]:
            cursor.execute(grant)


def _month(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _next_month(month: dt.datetime) -> dt.datetime:
    return (month + dt.timedelta(days=32)).replace(day=1)


def _create_partitions(cursor, months: set[dt.datetime]) -> None:
    for month in sorted(months):
        name = f"{TABLE}_y{month:%Y}m{month:%m}"
        cursor.execute(
            f"CREATE TABLE {name} PARTITION OF {TABLE} FOR VALUES FROM (%s) TO (%s)",
            [month, _next_month(month)],
        )
    cursor.execute(f"CREATE TABLE {TABLE}_default PARTITION OF {TABLE} DEFAULT")


def to_partitioned(apps, schema_editor) -> None:
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(f"LOCK TABLE {TABLE} IN ACCESS EXCLUSIVE MODE")
        captured = _capture(cursor)
        _drop_views(cursor, captured)
        cursor.execute(f"ALTER TABLE {TABLE} RENAME TO {OLD}")
        cursor.execute(f"CREATE TABLE {TABLE} (LIKE {OLD}) PARTITION BY RANGE (occurred_at)")
        cursor.execute(
            f"SELECT DISTINCT date_trunc('month', occurred_at AT TIME ZONE 'UTC') FROM {OLD}"  # noqa: S608
        )
        months = {row[0].replace(tzinfo=dt.UTC) for row in cursor.fetchall()}
        now = dt.datetime.now(dt.UTC)
        month = _month(now - dt.timedelta(days=BEHIND_DAYS))
        while month <= _month(now + dt.timedelta(days=31 * AHEAD_MONTHS)):
            months.add(month)
            month = _next_month(month)
        _create_partitions(cursor, months)
        cursor.execute(f"INSERT INTO {TABLE} SELECT * FROM {OLD}")  # noqa: S608 - constants
        cursor.execute(f"SELECT max(id) FROM {OLD}")  # noqa: S608 - constants
        last_id = cursor.fetchone()[0]
        cursor.execute(f"DROP TABLE {OLD}")  # and its identity sequence
        cursor.execute(f"CREATE SEQUENCE {SEQUENCE} OWNED BY {TABLE}.id")
        cursor.execute("SELECT setval(%s, %s, %s)", [SEQUENCE, last_id or 1, last_id is not None])
        cursor.execute(f"ALTER TABLE {TABLE} ALTER id SET DEFAULT nextval('{SEQUENCE}')")
        cursor.execute(
            f"ALTER TABLE {TABLE} ADD CONSTRAINT {TABLE}_pkey PRIMARY KEY (id, occurred_at)"
        )
        cursor.execute(
            f"ALTER TABLE {TABLE} ADD CONSTRAINT audit_event_stream_id_occurred "
            "UNIQUE (stream_id, occurred_at)"
        )
        _restore(cursor, captured)
        cursor.execute(f"ANALYZE {TABLE}")


def to_plain(apps, schema_editor) -> None:
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(f"LOCK TABLE {TABLE} IN ACCESS EXCLUSIVE MODE")
        captured = _capture(cursor)
        _drop_views(cursor, captured)
        cursor.execute(f"ALTER TABLE {TABLE} RENAME TO {OLD}")
        cursor.execute(f"CREATE TABLE {TABLE} (LIKE {OLD})")
        cursor.execute(f"INSERT INTO {TABLE} SELECT * FROM {OLD}")  # noqa: S608 - constants
        cursor.execute(f"SELECT max(id) FROM {OLD}")  # noqa: S608 - constants
        last_id = cursor.fetchone()[0]
        cursor.execute(f"DROP TABLE {OLD}")  # its partitions and sequence with it
        cursor.execute(f"ALTER TABLE {TABLE} ALTER id ADD GENERATED BY DEFAULT AS IDENTITY")
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence(%s, 'id'), %s, %s)",
            [TABLE, last_id or 1, last_id is not None],
        )
        cursor.execute(f"ALTER TABLE {TABLE} ADD CONSTRAINT {TABLE}_pkey PRIMARY KEY (id)")
        cursor.execute(
            f"ALTER TABLE {TABLE} ADD CONSTRAINT {TABLE}_stream_id_key UNIQUE (stream_id)"
        )
        _restore(cursor, captured)
        cursor.execute(f"ANALYZE {TABLE}")


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0011_sync_quarantine"),
        # Its views and indexes on audit_event exist before the swap, which carries them over.
        ("analytics", "0007_suspicious_ips_by_hour_index"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(to_partitioned, to_plain)],
            state_operations=[
                migrations.AlterField(
                    model_name="auditevent",
                    name="stream_id",
                    field=models.CharField(max_length=32),
                ),
                migrations.AddConstraint(
                    model_name="auditevent",
                    constraint=models.UniqueConstraint(
                        fields=("stream_id", "occurred_at"), name="audit_event_stream_id_occurred"
                    ),
                ),
            ],
        ),
    ]
