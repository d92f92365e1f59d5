-- analytics_daily: the view as the migrations leave it, as PostgreSQL prints it.
-- Change it with a migration that applies a copy of the new SQL, then update this file:
-- analytics/tests/test_sql_files.py holds the migrated database to it. The rows are kept in
-- analytics_daily_kept (analytics/migrations/0012_daily_kept.py): past days stored as they
-- close, today's recomputed by the refresh job.
CREATE VIEW analytics_daily AS
 SELECT k.day,
    k.dau,
    k.wau,
    k.mau,
    k.sessions_started,
    k.api_calls,
    k.logins,
    k.failed_logins,
    k.duration_p50,
    k.duration_p95
   FROM analytics_daily_kept k
  WHERE k.day > (( SELECT st.day - 90
           FROM analytics_user_stats_state st)) AND k.day <= (( SELECT st.day
           FROM analytics_user_stats_state st));
