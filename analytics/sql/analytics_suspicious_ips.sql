-- analytics_suspicious_ips: the view as the migrations leave it, as PostgreSQL prints it.
-- Change it with a migration that applies a copy of the new SQL, then update this file:
-- analytics/tests/test_sql_files.py holds the migrated database to it. The rows come from
-- analytics_suspicious_ips_window() (analytics/migrations/0008_suspicious_ips_per_ip.py), which
-- the admin's selector calls with the page's range.
CREATE VIEW analytics_suspicious_ips AS
 SELECT host(analytics_suspicious_ips_window.ip) AS id,
    analytics_suspicious_ips_window.ip,
    analytics_suspicious_ips_window.user_agent_count,
    analytics_suspicious_ips_window.user_agents,
    analytics_suspicious_ips_window.attempts,
    analytics_suspicious_ips_window.usernames_tried,
    analytics_suspicious_ips_window.first_seen,
    analytics_suspicious_ips_window.last_seen
   FROM analytics_suspicious_ips_window(24, analytics_setting_value('suspicious_ip_min_failures'::text, 10), analytics_setting_value('suspicious_ip_min_usernames'::text, 5)) analytics_suspicious_ips_window(ip, user_agent_count, user_agents, attempts, usernames_tried, first_seen, last_seen);
