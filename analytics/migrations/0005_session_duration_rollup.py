"""Session durations from a rollup: sessions ended per day and duration bucket.

The distribution used to be computed from every session ended in the last 30 days at each
read: seconds at millions of sessions, on the admin's front page and in Grafana. The rollup is
refreshed with the others (analytics.services.MATERIALIZED_VIEWS); the view keeps its name and
columns and sums the last 30 days of it ("30 d" = the current UTC day and the 29 before, as
everywhere else).
"""

import importlib

from django.db import migrations

grafana_0003 = importlib.import_module("analytics.migrations.0003_grafana_role")

BUCKETS = """(VALUES (1, '<= 1 min', 60), (2, '1-5 min', 300), (3, '5-15 min', 900),
             (4, '15 min-1 h', 3600), (5, '1 h-1 d', 86400), (6, '> 1 d', NULL))
     AS b(ord, bucket, upper_seconds)"""

FORWARD = f"""
DROP VIEW analytics_session_durations;

CREATE MATERIALIZED VIEW analytics_session_duration_day AS
SELECT (ended_at AT TIME ZONE 'UTC')::date AS day,
       CASE WHEN duration <= 60 THEN 1 WHEN duration <= 300 THEN 2
            WHEN duration <= 900 THEN 3 WHEN duration <= 3600 THEN 4
            WHEN duration <= 86400 THEN 5 ELSE 6 END AS ord,
       count(*)::integer AS sessions
FROM (SELECT ended_at, extract(epoch FROM last_active - started_at) AS duration
      FROM audit_session
      WHERE ended_at >= (analytics_utc_today() - 29)::timestamp AT TIME ZONE 'UTC') ended
GROUP BY 1, 2;
CREATE UNIQUE INDEX analytics_session_duration_day_pk
    ON analytics_session_duration_day (day, ord);

CREATE VIEW analytics_session_durations AS
SELECT b.ord, b.bucket, b.upper_seconds, coalesce(sum(d.sessions), 0)::integer AS sessions
FROM {BUCKETS}
LEFT JOIN analytics_session_duration_day d
       ON d.ord = b.ord AND d.day >= analytics_utc_today() - 29
GROUP BY b.ord, b.bucket, b.upper_seconds
ORDER BY b.ord;
"""  # noqa: S608 - built from constants

BACKWARD = f"""
DROP VIEW analytics_session_durations;
DROP MATERIALIZED VIEW analytics_session_duration_day;

CREATE VIEW analytics_session_durations AS
SELECT b.ord, b.bucket, b.upper_seconds, count(s.ord)::integer AS sessions
FROM {BUCKETS}
LEFT JOIN (
    SELECT CASE WHEN duration <= 60 THEN 1 WHEN duration <= 300 THEN 2
                WHEN duration <= 900 THEN 3 WHEN duration <= 3600 THEN 4
                WHEN duration <= 86400 THEN 5 ELSE 6 END AS ord
    FROM (SELECT extract(epoch FROM last_active - started_at) AS duration
          FROM audit_session
          WHERE ended_at >= analytics_now() - interval '30 days') ended
) s ON s.ord = b.ord
GROUP BY b.ord, b.bucket, b.upper_seconds
ORDER BY b.ord;
"""  # noqa: S608 - built from constants


def run(sql: str):
    def apply(apps, schema_editor) -> None:
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(sql)
            cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [grafana_0003.ROLE])
            if cursor.fetchone():
                grafana_0003.grant_read(cursor)

    return apply


class Migration(migrations.Migration):
    dependencies = [("analytics", "0004_views_on_hourly_calls")]

    operations = [migrations.RunPython(run(FORWARD), run(BACKWARD))]
