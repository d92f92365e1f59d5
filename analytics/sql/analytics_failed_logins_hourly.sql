-- analytics_failed_logins_hourly: the view as the migrations leave it, as PostgreSQL prints it.
-- Change it with a migration that applies a copy of the new SQL, then update this file:
-- analytics/tests/test_sql_files.py holds the migrated database to it.
CREATE VIEW analytics_failed_logins_hourly AS
 SELECT (date_trunc('hour'::text, (audit_event.occurred_at AT TIME ZONE 'UTC'::text)) AT TIME ZONE 'UTC'::text) AS hour,
    audit_event.reason,
    count(*)::integer AS failures
   FROM audit_event
  WHERE audit_event.event_type::text = 'login_failed'::text AND audit_event.occurred_at >= (analytics_now() - '30 days'::interval)
  GROUP BY ((date_trunc('hour'::text, (audit_event.occurred_at AT TIME ZONE 'UTC'::text)) AT TIME ZONE 'UTC'::text)), audit_event.reason;
