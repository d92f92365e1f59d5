-- analytics_session_duration_day: the materialized view as the migrations leave it, as PostgreSQL prints it.
-- Change it with a migration that applies a copy of the new SQL, then update this file:
-- analytics/tests/test_sql_files.py holds the migrated database to it.
CREATE MATERIALIZED VIEW analytics_session_duration_day AS
 SELECT (ended.ended_at AT TIME ZONE 'UTC'::text)::date AS day,
        CASE
            WHEN ended.duration <= 60::numeric THEN 1
            WHEN ended.duration <= 300::numeric THEN 2
            WHEN ended.duration <= 900::numeric THEN 3
            WHEN ended.duration <= 3600::numeric THEN 4
            WHEN ended.duration <= 86400::numeric THEN 5
            ELSE 6
        END AS ord,
    count(*)::integer AS sessions
   FROM ( SELECT audit_session.ended_at,
            EXTRACT(epoch FROM audit_session.last_active - audit_session.started_at) AS duration
           FROM audit_session
          WHERE audit_session.ended_at >= ((analytics_utc_today() - 29)::timestamp without time zone AT TIME ZONE 'UTC'::text)) ended
  GROUP BY ((ended.ended_at AT TIME ZONE 'UTC'::text)::date), (
        CASE
            WHEN ended.duration <= 60::numeric THEN 1
            WHEN ended.duration <= 300::numeric THEN 2
            WHEN ended.duration <= 900::numeric THEN 3
            WHEN ended.duration <= 3600::numeric THEN 4
            WHEN ended.duration <= 86400::numeric THEN 5
            ELSE 6
        END);
