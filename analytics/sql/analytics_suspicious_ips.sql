-- analytics_suspicious_ips: the view as the migrations leave it, as PostgreSQL prints it.
-- Change it with a migration that applies a copy of the new SQL, then update this file:
-- analytics/tests/test_sql_files.py holds the migrated database to it.
CREATE VIEW analytics_suspicious_ips AS
 SELECT (host(audit_event.ip) || ' '::text) || md5(audit_event.user_agent) AS id,
    audit_event.ip,
    audit_event.user_agent,
    count(*)::integer AS attempts,
    count(DISTINCT lower(audit_event.username::text))::integer AS usernames_tried,
    min(audit_event.occurred_at) AS first_seen,
    max(audit_event.occurred_at) AS last_seen
   FROM audit_event
  WHERE audit_event.event_type::text = 'login_failed'::text AND audit_event.ip IS NOT NULL AND audit_event.occurred_at >= (analytics_now() - '24:00:00'::interval) AND (date_trunc('hour'::text, (audit_event.occurred_at AT TIME ZONE 'UTC'::text)) AT TIME ZONE 'UTC'::text) >= (date_trunc('hour'::text, ((analytics_now() - '24:00:00'::interval) AT TIME ZONE 'UTC'::text)) AT TIME ZONE 'UTC'::text)
  GROUP BY audit_event.ip, audit_event.user_agent;
