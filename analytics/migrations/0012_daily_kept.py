"""analytics_daily (DAU, WAU, MAU, sessions, calls, logins and durations per UTC day) becomes a
view over a table whose past days are computed once, when they close.

Before, analytics_daily was a materialized view recomputing 90 days every minute, each day's WAU
and MAU a distinct count over 7 and 30 days of analytics_user_day (32 to 63 s at 1M users). Now:

* a closed day's row is stored by ``analytics_user_stats_roll`` as the day closes, before the
  per-user windows move past it: its WAU and MAU are then the numbers of users whose kept
  ``days_active_7d`` / ``days_active_30d`` (analytics_user_stats, migration 0011) are positive
  (ranges of their indexes), its DAU, sessions and calls that day's rows of analytics_user_day,
  its logins and durations that day's events and ended sessions: one day read, once;
* today's row is computed the same way by ``analytics_daily_refresh`` (the refresh job, every
  minute): today's rows only, never a 30-day distinct scan;
* rows older than 90 days leave the table.

Data synced for a day after it closed (a sync lagging past the first refresh after midnight)
is not in that day's stored row; ``rebuild_rollups`` recomputes the 90 days from scratch
(``analytics_daily_rebuild``, the materialized view's definition), as does a roll back in time
or more than 30 days ahead.
"""

import importlib

from django.db import migrations

grafana_0003 = importlib.import_module("analytics.migrations.0003_grafana_role")
user_day_0010 = importlib.import_module("analytics.migrations.0010_user_day_kept_by_sync")
stats_0011 = importlib.import_module("analytics.migrations.0011_user_stats_kept")

# The table and its functions. A day's bounds in UTC: p_day::timestamp AT TIME ZONE 'UTC'.
TABLE = f"""
DROP MATERIALIZED VIEW analytics_daily;

CREATE TABLE analytics_daily_kept (
    day date PRIMARY KEY,
    dau integer NOT NULL,
    wau integer NOT NULL,
    mau integer NOT NULL,
    sessions_started integer NOT NULL,
    api_calls bigint NOT NULL,
    logins integer NOT NULL,
    failed_logins integer NOT NULL,
    duration_p50 double precision,
    duration_p95 double precision
);

-- One day's row; WAU and MAU from the per-user figures, whose windows must end on p_day.
CREATE FUNCTION analytics_daily_store(p_day date) RETURNS void LANGUAGE sql AS $$
    INSERT INTO analytics_daily_kept AS k
    SELECT p_day,
           (SELECT count(*) FROM analytics_user_day WHERE day = p_day)::integer,
           (SELECT count(*) FROM analytics_user_stats WHERE days_active_7d > 0)::integer,
           (SELECT count(*) FROM analytics_user_stats WHERE days_active_30d > 0)::integer,
           coalesce((SELECT sum(sessions_started) FROM analytics_user_day WHERE day = p_day),
                    0)::integer,
           coalesce((SELECT sum(api_calls) FROM analytics_user_day WHERE day = p_day), 0)::bigint,
           e.logins, e.failed_logins, du.p50, du.p95
    FROM (
        SELECT count(*) FILTER (WHERE event_type = 'login')::integer AS logins,
               count(*) FILTER (WHERE event_type = 'login_failed')::integer AS failed_logins
        FROM audit_event
        WHERE event_type IN ('login', 'login_failed')
          AND occurred_at >= p_day::timestamp AT TIME ZONE 'UTC'
          AND occurred_at < (p_day + 1)::timestamp AT TIME ZONE 'UTC'
    ) e, (
        SELECT percentile_cont(0.5) WITHIN GROUP (
                   ORDER BY extract(epoch FROM last_active - started_at)::double precision) AS p50,
               percentile_cont(0.95) WITHIN GROUP (
                   ORDER BY extract(epoch FROM last_active - started_at)::double precision) AS p95
        FROM audit_session
        WHERE ended_at >= p_day::timestamp AT TIME ZONE 'UTC'
          AND ended_at < (p_day + 1)::timestamp AT TIME ZONE 'UTC'
    ) du
    ON CONFLICT (day) DO UPDATE SET
        dau = EXCLUDED.dau, wau = EXCLUDED.wau, mau = EXCLUDED.mau,
        sessions_started = EXCLUDED.sessions_started, api_calls = EXCLUDED.api_calls,
        logins = EXCLUDED.logins, failed_logins = EXCLUDED.failed_logins,
        duration_p50 = EXCLUDED.duration_p50, duration_p95 = EXCLUDED.duration_p95;
$$;

-- Today's row (the anchored day of the per-user figures), for the refresh job.
CREATE FUNCTION analytics_daily_refresh() RETURNS date LANGUAGE plpgsql AS $$
DECLARE
    v_day date;
BEGIN
    PERFORM pg_advisory_xact_lock_shared({stats_0011.LOCK});
    SELECT day INTO v_day FROM analytics_user_stats_state;
    IF v_day IS NOT NULL THEN
        PERFORM analytics_daily_store(v_day);
    END IF;
    RETURN v_day;
END
$$;

-- The 90 days ending on p_day from scratch (the materialized view's definition).
CREATE FUNCTION analytics_daily_rebuild(p_day date) RETURNS void LANGUAGE sql AS $$
    DELETE FROM analytics_daily_kept;
    INSERT INTO analytics_daily_kept
    WITH days AS (
        SELECT generate_series(p_day - 89, p_day, interval '1 day')::date AS day
    ), active AS (
        SELECT d.day,
               count(DISTINCT ud.user_id) FILTER (WHERE ud.day = d.day)::integer AS dau,
               count(DISTINCT ud.user_id) FILTER (WHERE ud.day > d.day - 7)::integer AS wau,
               count(DISTINCT ud.user_id)::integer AS mau,
               coalesce(sum(ud.sessions_started) FILTER (WHERE ud.day = d.day), 0)::integer
                   AS sessions_started,
               coalesce(sum(ud.api_calls) FILTER (WHERE ud.day = d.day), 0)::bigint AS api_calls
        FROM days d
        LEFT JOIN analytics_user_day ud ON ud.day > d.day - 30 AND ud.day <= d.day
        GROUP BY d.day
    ), events AS (
        SELECT (occurred_at AT TIME ZONE 'UTC')::date AS day,
               count(*) FILTER (WHERE event_type = 'login')::integer AS logins,
               count(*) FILTER (WHERE event_type = 'login_failed')::integer AS failed_logins
        FROM audit_event
        WHERE event_type IN ('login', 'login_failed')
          AND occurred_at >= (p_day - 89)::timestamp AT TIME ZONE 'UTC'
          AND occurred_at < (p_day + 1)::timestamp AT TIME ZONE 'UTC'
        GROUP BY 1
    ), durations AS (
        SELECT (ended_at AT TIME ZONE 'UTC')::date AS day,
               percentile_cont(0.5) WITHIN GROUP (
                   ORDER BY extract(epoch FROM last_active - started_at)::double precision) AS p50,
               percentile_cont(0.95) WITHIN GROUP (
                   ORDER BY extract(epoch FROM last_active - started_at)::double precision) AS p95
        FROM audit_session
        WHERE ended_at >= (p_day - 89)::timestamp AT TIME ZONE 'UTC'
          AND ended_at < (p_day + 1)::timestamp AT TIME ZONE 'UTC'
        GROUP BY 1
    )
    SELECT a.day, a.dau, a.wau, a.mau, a.sessions_started, a.api_calls,
           coalesce(e.logins, 0), coalesce(e.failed_logins, 0), du.p50, du.p95
    FROM active a
    LEFT JOIN events e ON e.day = a.day
    LEFT JOIN durations du ON du.day = a.day;
$$;

CREATE VIEW analytics_daily AS
 SELECT k.day,
    k.dau,
    k.wau,
    k.mau,
    k.sessions_started,
    k.api_calls,
    k.logins,
    k.failed_logins,
    k.duration_p50,
    k.duration_p95
   FROM analytics_daily_kept k
  WHERE k.day > (( SELECT st.day - 90
           FROM analytics_user_stats_state st)) AND k.day <= (( SELECT st.day
           FROM analytics_user_stats_state st));
"""  # noqa: S608 - built from constants

# 0011's rebuild and roll, now also keeping analytics_daily_kept: the rebuild recomputes its 90
# days; the roll stores each day as it closes (before the windows move past it) and drops the
# rows older than 90 days.
FUNCTIONS = (
    stats_0011.FUNCTIONS.split("-- Recompute the whole table")[1]
    .replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 2)
    .replace(
        "    INSERT INTO analytics_user_totals (active_users)\n"
        "    SELECT count(*) FROM accounts_user WHERE is_active;\n",
        "    INSERT INTO analytics_user_totals (active_users)\n"
        "    SELECT count(*) FROM accounts_user WHERE is_active;\n"
        "    PERFORM analytics_daily_rebuild(v_day);\n",
    )
    .replace(
        "    WHILE d < v_day LOOP\n        d := d + 1;\n",
        "    WHILE d < v_day LOOP\n        PERFORM analytics_daily_store(d);\n        d := d + 1;\n",
    )
    .replace(
        "    UPDATE analytics_user_stats_state SET day = v_day, hour_start = v_hour;\n",
        "    UPDATE analytics_user_stats_state SET day = v_day, hour_start = v_hour;\n"
        "    DELETE FROM analytics_daily_kept WHERE day <= v_day - 90;\n",
    )
)
assert FUNCTIONS.count("analytics_daily") == 3, FUNCTIONS

FORWARD = TABLE + "-- Recompute the whole table" + FUNCTIONS

MATERIALIZED_DAILY = (
    "CREATE MATERIALIZED VIEW analytics_daily"
    + user_day_0010.DEPENDENTS.split("CREATE MATERIALIZED VIEW analytics_daily")[1].split(
        "CREATE VIEW analytics_user_activity"
    )[0]
    + "CREATE UNIQUE INDEX analytics_daily_pk ON analytics_daily (day);\n"
)

BACKWARD = (
    "DROP VIEW analytics_daily;\n-- Recompute the whole table"
    + stats_0011.FUNCTIONS.split("-- Recompute the whole table")[1].replace(
        "CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 2
    )
    + """
DROP FUNCTION analytics_daily_rebuild(date);
DROP FUNCTION analytics_daily_refresh();
DROP FUNCTION analytics_daily_store(date);
DROP TABLE analytics_daily_kept;
"""
    + MATERIALIZED_DAILY
    + "REFRESH MATERIALIZED VIEW analytics_daily;\n"
)


def run(sql: str, *, fill: bool):
    def apply(apps, schema_editor) -> None:
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(sql)
            if fill:
                cursor.execute(
                    "SELECT analytics_daily_rebuild(day) FROM analytics_user_stats_state"
                )
            cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [grafana_0003.ROLE])
            if cursor.fetchone():
                grafana_0003.grant_read(cursor)

    return apply


class Migration(migrations.Migration):
    dependencies = [("analytics", "0011_user_stats_kept")]

    operations = [migrations.RunPython(run(FORWARD, fill=True), run(BACKWARD, fill=False))]
