-- analytics_user_day: the materialized view as the migrations leave it, as PostgreSQL prints it.
-- Change it with a migration that applies a copy of the new SQL, then update this file:
-- analytics/tests/test_sql_files.py holds the migrated database to it.
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
