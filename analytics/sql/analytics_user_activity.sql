-- analytics_user_activity: the view as the migrations leave it, as PostgreSQL prints it.
-- Change it with a migration that applies a copy of the new SQL, then update this file:
-- analytics/tests/test_sql_files.py holds the migrated database to it.
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
