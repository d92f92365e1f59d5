-- analytics_power_users: the view as the migrations leave it, as PostgreSQL prints it.
-- Change it with a migration that applies a copy of the new SQL, then update this file:
-- analytics/tests/test_sql_files.py holds the migrated database to it.
CREATE VIEW analytics_power_users AS
 SELECT p.id,
    p."window",
    p.user_id,
    p.username,
    p.api_calls,
    p.days_active_30d,
    p.last_active
   FROM ( SELECT '24h:'::text || s.user_id AS id,
            '24h'::text AS "window",
            s.user_id,
            s.username,
            s.api_calls_24h AS api_calls,
            s.days_active_30d,
            s.last_active
           FROM analytics_user_stats s
        UNION ALL
         SELECT '7d:'::text || s.user_id AS id,
            '7d'::text AS "window",
            s.user_id,
            s.username,
            s.api_calls_7d AS api_calls,
            s.days_active_30d,
            s.last_active
           FROM analytics_user_stats s
        UNION ALL
         SELECT '30d:'::text || s.user_id AS id,
            '30d'::text AS "window",
            s.user_id,
            s.username,
            s.api_calls_30d AS api_calls,
            s.days_active_30d,
            s.last_active
           FROM analytics_user_stats s) p
  WHERE
        CASE p."window"
            WHEN '30d'::text THEN p.days_active_30d > 0
            ELSE p.api_calls > 0
        END;
