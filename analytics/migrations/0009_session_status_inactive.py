"""The third session status is "inactive", no longer "idle".

"Idle" meant two things: a session (or user) without activity in the last hour, and the
idle-users report (no activity for 7 days or more). The status is renamed so that "idle" names
only the report (and the idle timeout that ends a session); accounts.livesessions.SessionStatus
says the same.

Function and views keep their names, columns and grants (CREATE OR REPLACE): only the status
value changes, in analytics_session_status(), in the list of statuses of
analytics_sessions_by_status and in the status of a never-active user in
analytics_user_activity.
"""

from django.db import migrations

FORWARD = """
CREATE OR REPLACE FUNCTION analytics_session_status(p_last_active timestamptz) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN p_last_active > analytics_now() - make_interval(
            secs => analytics_setting_value('active_window_seconds', 300)) THEN 'active_now'
        WHEN p_last_active > analytics_now() - make_interval(
            secs => analytics_setting_value('recent_window_seconds', 3600)) THEN 'recent'
        ELSE 'inactive'
    END
$$;

CREATE OR REPLACE VIEW analytics_sessions_by_status AS
 SELECT st.status,
    COALESCE(c.sessions, 0::bigint)::integer AS sessions
   FROM ( VALUES ('active_now'::text,1), ('recent'::text,2), ('inactive'::text,3)) st(status, ord)
     LEFT JOIN ( SELECT analytics_session_status(audit_session.last_active) AS status,
            count(*) AS sessions
           FROM audit_session
          WHERE audit_session.ended_at IS NULL
          GROUP BY (analytics_session_status(audit_session.last_active))) c ON c.status = st.status
  ORDER BY st.ord;

CREATE OR REPLACE VIEW analytics_user_activity AS
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
"""

# The same, with the status's old name.
BACKWARD = FORWARD.replace("'inactive'", "'idle'")


class Migration(migrations.Migration):
    dependencies = [("analytics", "0008_suspicious_ips_per_ip")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
