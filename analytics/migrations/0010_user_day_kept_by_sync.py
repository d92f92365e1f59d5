"""analytics_user_day becomes a table kept by the sync, in the sync's own transaction.

Before, analytics_user_day was a materialized view recomputed from every session ever kept
(jsonb_each over each session's hourly counts): the largest part of the refresh, growing with
history. Now it is a table of (user, UTC day) → API calls and sessions started, changed by
statement-level triggers on audit_session as each statement of the sync (or the timeout job, or
prune) changes sessions. The triggers read the statement's transition tables — the rows as they
were and as they are — and add the difference per (user, day):

* a new session adds its hours' calls and one session started on its start day;
* an updated session adds (its hours now) - (its hours before): counts only move forward, so
  this is what the update added, wherever the hours fall (a session open across midnight adds
  to both days);
* a deleted session (prune, a user deleted) subtracts what it had added; a (user, day) left
  with nothing leaves the table, as it would from the view; TRUNCATE empties it too.

The triggers run inside the statement that changes the sessions, so the rollup commits with the
sessions or not at all: a sync replayed, run twice or rolled back changes it exactly as much as
it changes audit_session. `manage.py rebuild_rollups` (analytics.rollups.rebuild) recomputes
the table from audit_session with the view's old definition, for disaster recovery; a test
holds the two equal after a workload.

The views and materialized views that read analytics_user_day (user stats, daily) are created
again over the table, unchanged; Grafana's role may SELECT the table as it could the view.
"""

import importlib

from django.db import migrations

grafana_0003 = importlib.import_module("analytics.migrations.0003_grafana_role")

# The current definitions of the objects that read analytics_user_day, recreated over it.
DEPENDENTS = """
CREATE MATERIALIZED VIEW analytics_user_stats AS
 WITH window_24h AS (
         SELECT (date_trunc('hour'::text, (analytics_now() AT TIME ZONE 'UTC'::text)) AT TIME ZONE 'UTC'::text) - '23:00:00'::interval AS start
        ), last_24h AS (
         SELECT s.user_id,
            sum(h_1.value::bigint)::bigint AS calls
           FROM window_24h w,
            audit_session s
             CROSS JOIN LATERAL jsonb_each_text(s.hourly_calls) h_1(key, value)
          WHERE s.last_active >= w.start AND h_1.key::bigint::numeric >= EXTRACT(epoch FROM w.start)
          GROUP BY s.user_id
        ), last_30d AS (
         SELECT analytics_user_day.user_id,
            COALESCE(sum(analytics_user_day.api_calls) FILTER (WHERE analytics_user_day.day >= (analytics_utc_today() - 6)), 0::numeric)::bigint AS calls_7d,
            sum(analytics_user_day.api_calls)::bigint AS calls_30d,
            count(*)::integer AS days_active_30d
           FROM analytics_user_day
          WHERE analytics_user_day.day >= (analytics_utc_today() - 29)
          GROUP BY analytics_user_day.user_id
        )
 SELECT COALESCE(d.user_id, h.user_id) AS user_id,
    COALESCE(h.calls, 0::bigint) AS api_calls_24h,
    COALESCE(d.calls_7d, 0::bigint) AS api_calls_7d,
    COALESCE(d.calls_30d, 0::bigint) AS api_calls_30d,
    COALESCE(d.days_active_30d, 0) AS days_active_30d
   FROM last_30d d
     FULL JOIN last_24h h ON h.user_id = d.user_id;

CREATE MATERIALIZED VIEW analytics_daily AS
 WITH days AS (
         SELECT generate_series((analytics_utc_today() - 89)::timestamp with time zone, analytics_utc_today()::timestamp with time zone, '1 day'::interval)::date AS day
        ), active AS (
         SELECT d.day,
            count(DISTINCT ud.user_id) FILTER (WHERE ud.day = d.day)::integer AS dau,
            count(DISTINCT ud.user_id) FILTER (WHERE ud.day > (d.day - 7))::integer AS wau,
            count(DISTINCT ud.user_id)::integer AS mau,
            COALESCE(sum(ud.sessions_started) FILTER (WHERE ud.day = d.day), 0::bigint)::integer AS sessions_started,
            COALESCE(sum(ud.api_calls) FILTER (WHERE ud.day = d.day), 0::numeric)::bigint AS api_calls
           FROM days d
             LEFT JOIN analytics_user_day ud ON ud.day > (d.day - 30) AND ud.day <= d.day
          GROUP BY d.day
        ), events AS (
         SELECT (audit_event.occurred_at AT TIME ZONE 'UTC'::text)::date AS day,
            count(*) FILTER (WHERE audit_event.event_type::text = 'login'::text)::integer AS logins,
            count(*) FILTER (WHERE audit_event.event_type::text = 'login_failed'::text)::integer AS failed_logins
           FROM audit_event
          WHERE (audit_event.event_type::text = ANY (ARRAY['login'::character varying, 'login_failed'::character varying]::text[])) AND audit_event.occurred_at >= ((analytics_utc_today() - 89)::timestamp without time zone AT TIME ZONE 'UTC'::text)
          GROUP BY ((audit_event.occurred_at AT TIME ZONE 'UTC'::text)::date)
        ), durations AS (
         SELECT (audit_session.ended_at AT TIME ZONE 'UTC'::text)::date AS day,
            percentile_cont(0.5::double precision) WITHIN GROUP (ORDER BY (EXTRACT(epoch FROM audit_session.last_active - audit_session.started_at)::double precision)) AS p50,
            percentile_cont(0.95::double precision) WITHIN GROUP (ORDER BY (EXTRACT(epoch FROM audit_session.last_active - audit_session.started_at)::double precision)) AS p95
           FROM audit_session
          WHERE audit_session.ended_at >= ((analytics_utc_today() - 89)::timestamp without time zone AT TIME ZONE 'UTC'::text)
          GROUP BY ((audit_session.ended_at AT TIME ZONE 'UTC'::text)::date)
        )
 SELECT a.day,
    a.dau,
    a.wau,
    a.mau,
    a.sessions_started,
    a.api_calls,
    COALESCE(e.logins, 0) AS logins,
    COALESCE(e.failed_logins, 0) AS failed_logins,
    du.p50 AS duration_p50,
    du.p95 AS duration_p95
   FROM active a
     LEFT JOIN events e ON e.day = a.day
     LEFT JOIN durations du ON du.day = a.day;

CREATE VIEW analytics_user_activity AS
 SELECT u.id AS user_id,
    u.username,
    u.email,
    u.is_active,
    u.date_joined,
    a.first_active,
    a.last_active,
    COALESCE(s.api_calls_24h, 0::bigint) AS api_calls_24h,
    COALESCE(s.api_calls_7d, 0::bigint) AS api_calls_7d,
    COALESCE(s.api_calls_30d, 0::bigint) AS api_calls_30d,
    COALESCE(s.days_active_30d, 0) AS days_active_30d,
        CASE
            WHEN a.last_active IS NULL THEN 'inactive'::text
            ELSE analytics_session_status(a.last_active)
        END AS status,
    a.last_active IS NULL AS never_active
   FROM accounts_user u
     LEFT JOIN audit_user_activity a ON a.user_id = u.id
     LEFT JOIN analytics_user_stats s ON s.user_id = u.id;

CREATE VIEW analytics_power_users AS
 SELECT '24h:'::text || s.user_id AS id,
    '24h'::text AS "window",
    s.user_id,
    u.username,
    s.api_calls_24h AS api_calls,
    s.days_active_30d,
    a.last_active
   FROM analytics_user_stats s
     JOIN accounts_user u ON u.id = s.user_id
     LEFT JOIN audit_user_activity a ON a.user_id = s.user_id
  WHERE s.api_calls_24h > 0
UNION ALL
 SELECT '7d:'::text || s.user_id AS id,
    '7d'::text AS "window",
    s.user_id,
    u.username,
    s.api_calls_7d AS api_calls,
    s.days_active_30d,
    a.last_active
   FROM analytics_user_stats s
     JOIN accounts_user u ON u.id = s.user_id
     LEFT JOIN audit_user_activity a ON a.user_id = s.user_id
  WHERE s.api_calls_7d > 0
UNION ALL
 SELECT '30d:'::text || s.user_id AS id,
    '30d'::text AS "window",
    s.user_id,
    u.username,
    s.api_calls_30d AS api_calls,
    s.days_active_30d,
    a.last_active
   FROM analytics_user_stats s
     JOIN accounts_user u ON u.id = s.user_id
     LEFT JOIN audit_user_activity a ON a.user_id = s.user_id
  WHERE s.days_active_30d > 0;

CREATE UNIQUE INDEX analytics_user_stats_pk ON analytics_user_stats (user_id);
CREATE INDEX analytics_user_stats_24h ON analytics_user_stats (api_calls_24h DESC, user_id);
CREATE INDEX analytics_user_stats_7d ON analytics_user_stats (api_calls_7d DESC, user_id);
CREATE INDEX analytics_user_stats_30d ON analytics_user_stats (api_calls_30d DESC, user_id);
CREATE INDEX analytics_user_stats_days ON analytics_user_stats (days_active_30d DESC, user_id);
CREATE UNIQUE INDEX analytics_daily_pk ON analytics_daily (day);
"""

# What each session contributes to analytics_user_day: {sign} 1 for its start, {sign} its
# hours' calls, from the transition table {rows}. An hour's key is its start in epoch seconds,
# so its UTC day is key // 86400 days after 1970-01-01 (the day to_timestamp(key) AT TIME ZONE
# 'UTC' gives, at a quarter less of the trigger's cost).
CONTRIBUTIONS = """
    SELECT r.user_id, date '1970-01-01' + (h.key::bigint / 86400)::integer AS day,
           {sign} h.value::bigint AS api_calls, 0 AS sessions
    FROM {rows} r CROSS JOIN LATERAL jsonb_each_text(r.hourly_calls) h(key, value)
    WHERE r.user_id IS NOT NULL
    UNION ALL
    SELECT r.user_id, (r.started_at AT TIME ZONE 'UTC')::date, 0, {sign} 1
    FROM {rows} r WHERE r.user_id IS NOT NULL
"""

# Adds the differences, in key order (two writers lock rows in the same order). A (user, day)
# whose difference is zero is not rewritten (a session whose counts did not change, an update
# of its end only). No join of the old and new transition tables: they have no index, and the
# sync turns hash and merge joins off in its transaction (see audit.sync), so a join of 10k
# updated sessions would be a nested loop of 10^8 comparisons; summing the new rows and
# subtracting the old ones gives the same difference. A (user, day) left with nothing (its
# sessions deleted or moved to another user) leaves the table, as it would the view.
APPLY = """
DECLARE
    emptied_users bigint[];
    emptied_days date[];
BEGIN
    WITH applied AS (
        INSERT INTO analytics_user_day AS d (user_id, day, api_calls, sessions_started)
        SELECT c.user_id, c.day, sum(c.api_calls)::bigint, sum(c.sessions)::integer
        FROM ({contributions}) c
        GROUP BY c.user_id, c.day
        ORDER BY c.user_id, c.day
        ON CONFLICT (user_id, day) DO UPDATE SET
            api_calls = d.api_calls + EXCLUDED.api_calls,
            sessions_started = d.sessions_started + EXCLUDED.sessions_started
        WHERE EXCLUDED.api_calls <> 0 OR EXCLUDED.sessions_started <> 0
        RETURNING d.user_id, d.day, d.api_calls, d.sessions_started
    )
    SELECT array_agg(user_id), array_agg(day) INTO emptied_users, emptied_days
    FROM applied WHERE api_calls = 0 AND sessions_started = 0;
    IF emptied_users IS NOT NULL THEN
        DELETE FROM analytics_user_day d
        USING unnest(emptied_users, emptied_days) AS gone(user_id, day)
        WHERE d.user_id = gone.user_id AND d.day = gone.day
          AND d.api_calls = 0 AND d.sessions_started = 0;
    END IF;
    RETURN NULL;
END
"""

NEW = CONTRIBUTIONS.format(sign="", rows="new_sessions")
OLD = CONTRIBUTIONS.format(sign="-", rows="old_sessions")

FORWARD = (
    """
DROP MATERIALIZED VIEW analytics_user_day CASCADE;

CREATE TABLE analytics_user_day (
    user_id bigint NOT NULL,
    day date NOT NULL,
    api_calls bigint NOT NULL,
    sessions_started integer NOT NULL,
    CONSTRAINT analytics_user_day_pk PRIMARY KEY (user_id, day)
) WITH (fillfactor = 90);
CREATE INDEX analytics_user_day_day ON analytics_user_day (day);

CREATE FUNCTION analytics_user_day_sessions_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$"""
    + APPLY.format(contributions=NEW)
    + """$$;

CREATE FUNCTION analytics_user_day_sessions_updated() RETURNS trigger
LANGUAGE plpgsql AS $$"""
    + APPLY.format(contributions=NEW + "UNION ALL" + OLD)
    + """$$;

CREATE FUNCTION analytics_user_day_sessions_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$"""
    + APPLY.format(contributions=OLD)
    + """$$;

-- Emptying audit_session (a test database being reset, a bench) empties its rollup: TRUNCATE
-- fires no row-level changes for the triggers above to follow.
CREATE FUNCTION analytics_user_day_sessions_truncated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE analytics_user_day;
    RETURN NULL;
END
$$;

CREATE TRIGGER analytics_user_day_inserted AFTER INSERT ON audit_session
    REFERENCING NEW TABLE AS new_sessions
    FOR EACH STATEMENT EXECUTE FUNCTION analytics_user_day_sessions_inserted();
CREATE TRIGGER analytics_user_day_updated AFTER UPDATE ON audit_session
    REFERENCING OLD TABLE AS old_sessions NEW TABLE AS new_sessions
    FOR EACH STATEMENT EXECUTE FUNCTION analytics_user_day_sessions_updated();
CREATE TRIGGER analytics_user_day_deleted AFTER DELETE ON audit_session
    REFERENCING OLD TABLE AS old_sessions
    FOR EACH STATEMENT EXECUTE FUNCTION analytics_user_day_sessions_deleted();
CREATE TRIGGER analytics_user_day_truncated AFTER TRUNCATE ON audit_session
    FOR EACH STATEMENT EXECUTE FUNCTION analytics_user_day_sessions_truncated();
"""
    + DEPENDENTS
)

# The table's first rows: the view's definition over the sessions kept so far.
FILL = """
INSERT INTO analytics_user_day (user_id, day, api_calls, sessions_started)
SELECT user_id, day, api_calls, sessions_started FROM (
 SELECT activity.user_id,
    activity.day,
    sum(activity.api_calls)::bigint AS api_calls,
    sum(activity.sessions)::integer AS sessions_started
   FROM ( SELECT session_hours.user_id,
            (session_hours.hour AT TIME ZONE 'UTC'::text)::date AS day,
            session_hours.api_calls,
            0 AS sessions
           FROM ( SELECT s.user_id,
                    to_timestamp(h.key::bigint::double precision) AS hour,
                    h.value::bigint AS api_calls
                   FROM audit_session s
                     CROSS JOIN LATERAL jsonb_each_text(s.hourly_calls) h(key, value)) session_hours
        UNION ALL
         SELECT audit_session.user_id,
            (audit_session.started_at AT TIME ZONE 'UTC'::text)::date AS timezone,
            0,
            1
           FROM audit_session) activity
  GROUP BY activity.user_id, activity.day
) v WHERE v.user_id IS NOT NULL;
"""

DROP_KEPT = """
DROP TRIGGER analytics_user_day_inserted ON audit_session;
DROP TRIGGER analytics_user_day_updated ON audit_session;
DROP TRIGGER analytics_user_day_deleted ON audit_session;
DROP TRIGGER analytics_user_day_truncated ON audit_session;
DROP FUNCTION analytics_user_day_sessions_inserted();
DROP FUNCTION analytics_user_day_sessions_updated();
DROP FUNCTION analytics_user_day_sessions_deleted();
DROP FUNCTION analytics_user_day_sessions_truncated();
DROP TABLE analytics_user_day CASCADE;
"""
USER_DAY_VIEW = """
CREATE MATERIALIZED VIEW analytics_user_day AS
 SELECT activity.user_id,
    activity.day,
    sum(activity.api_calls)::bigint AS api_calls,
    sum(activity.sessions)::integer AS sessions_started
   FROM ( SELECT session_hours.user_id,
            (session_hours.hour AT TIME ZONE 'UTC'::text)::date AS day,
            session_hours.api_calls,
            0 AS sessions
           FROM ( SELECT s.user_id,
                    to_timestamp(h.key::bigint::double precision) AS hour,
                    h.value::bigint AS api_calls
                   FROM audit_session s
                     CROSS JOIN LATERAL jsonb_each_text(s.hourly_calls) h(key, value)) session_hours
        UNION ALL
         SELECT audit_session.user_id,
            (audit_session.started_at AT TIME ZONE 'UTC'::text)::date AS timezone,
            0,
            1
           FROM audit_session) activity
  GROUP BY activity.user_id, activity.day;
CREATE UNIQUE INDEX analytics_user_day_pk ON analytics_user_day (user_id, day);
CREATE INDEX analytics_user_day_day ON analytics_user_day (day);
"""
BACKWARD = DROP_KEPT + USER_DAY_VIEW + DEPENDENTS

GRANT_TABLE = f"GRANT SELECT ON analytics_user_day TO {grafana_0003.ROLE}"


def run(sql: str, *, fill: bool):
    def apply(apps, schema_editor) -> None:
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(sql)
            if fill:
                cursor.execute(FILL)
            cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [grafana_0003.ROLE])
            if cursor.fetchone():
                grafana_0003.grant_read(cursor)
                if fill:
                    cursor.execute(GRANT_TABLE)

    return apply


class Migration(migrations.Migration):
    dependencies = [
        ("analytics", "0009_session_status_inactive"),
        ("audit", "0013_end_reason_lost"),
    ]

    operations = [migrations.RunPython(run(FORWARD, fill=True), run(BACKWARD, fill=False))]
