-- analytics_idle_users: the view as the migrations leave it, as PostgreSQL prints it.
-- Change it with a migration that applies a copy of the new SQL, then update this file:
-- analytics/tests/test_sql_files.py holds the migrated database to it.
CREATE VIEW analytics_idle_users AS
 SELECT s.user_id,
    s.username,
    u.email,
    u.date_joined,
    s.last_active,
        CASE
            WHEN s.last_active IS NULL THEN NULL::integer
            ELSE floor(EXTRACT(epoch FROM analytics_now() - s.last_active) / 86400::numeric)::integer
        END AS idle_days,
    s.last_active IS NULL AS never_active
   FROM analytics_user_stats s
     LEFT JOIN accounts_user u ON u.id = s.user_id
  WHERE s.is_active AND (s.last_active IS NULL OR s.last_active <= (analytics_now() - make_interval(days => analytics_setting_value('idle_user_days'::text, 7))));
