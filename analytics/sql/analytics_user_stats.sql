-- analytics_user_stats: the materialized view as the migrations leave it, as PostgreSQL prints it.
-- Change it with a migration that applies a copy of the new SQL, then update this file:
-- analytics/tests/test_sql_files.py holds the migrated database to it.
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
