-- analytics_daily: the materialized view as the migrations leave it, as PostgreSQL prints it.
-- Change it with a migration that applies a copy of the new SQL, then update this file:
-- analytics/tests/test_sql_files.py holds the migrated database to it.
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
