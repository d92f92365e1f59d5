-- analytics_user_activity: the view as the migrations leave it, as PostgreSQL prints it.
-- Change it with a migration that applies a copy of the new SQL, then update this file:
-- analytics/tests/test_sql_files.py holds the migrated database to it.
CREATE VIEW analytics_user_activity AS
 SELECT s.user_id,
    s.username,
    u.email,
    u.is_active,
    u.date_joined,
    a.first_active,
    s.last_active,
    s.api_calls_24h,
    s.api_calls_7d,
    s.api_calls_30d,
    s.days_active_30d,
        CASE
            WHEN s.last_active IS NULL THEN 'inactive'::text
            ELSE analytics_session_status(s.last_active)
        END AS status,
    s.last_active IS NULL AS never_active
   FROM analytics_user_stats s
     LEFT JOIN accounts_user u ON u.id = s.user_id
     LEFT JOIN audit_user_activity a ON a.user_id = s.user_id;
