-- analytics_idle_users: the view as the migrations leave it, as PostgreSQL prints it.
-- Change it with a migration that applies a copy of the new SQL, then update this file:
-- analytics/tests/test_sql_files.py holds the migrated database to it.
CREATE VIEW analytics_idle_users AS
 SELECT u.id AS user_id,
    u.username,
    u.email,
    u.date_joined,
    a.last_active,
        CASE
            WHEN a.last_active IS NULL THEN NULL::integer
            ELSE floor(EXTRACT(epoch FROM analytics_now() - a.last_active) / 86400::numeric)::integer
        END AS idle_days,
    a.last_active IS NULL AS never_active
   FROM accounts_user u
     LEFT JOIN audit_user_activity a ON a.user_id = u.id
  WHERE u.is_active AND (a.last_active IS NULL OR a.last_active <= (analytics_now() - make_interval(days => analytics_setting_value('idle_user_days'::text, 7))));
