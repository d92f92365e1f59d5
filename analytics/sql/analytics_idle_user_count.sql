-- analytics_idle_user_count: the view as the migrations leave it, as PostgreSQL prints it.
-- Change it with a migration that applies a copy of the new SQL, then update this file:
-- analytics/tests/test_sql_files.py holds the migrated database to it.
CREATE VIEW analytics_idle_user_count AS
 SELECT t.active_users - r.recent AS idle_users,
    t.active_users - r.seen AS never_active
   FROM analytics_user_totals t,
    ( SELECT count(*) FILTER (WHERE s.last_active > (( SELECT analytics_now() - make_interval(days => analytics_setting_value('idle_user_days'::text, 7))))) AS recent,
            count(*) AS seen
           FROM analytics_user_stats s
          WHERE s.is_active AND s.last_active IS NOT NULL) r;
