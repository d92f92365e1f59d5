"""Suspicious IPs: one row per address, past a threshold, over any window.

Before, every failed login made its (IP, user agent) pair "suspicious": one typo qualified, and
an address that changed its user agent showed as several rows. Now:

* one row per address, its user agents as a count and a list (the first 10, alphabetically);
* only addresses past a threshold in the window: at least `suspicious_ip_min_failures` failed
  logins, or at least `suspicious_ip_min_usernames` distinct usernames tried (analytics_setting,
  copied from SUSPICIOUS_IP_MIN_FAILURES / SUSPICIOUS_IP_MIN_USERNAMES);
* the window is a parameter: `analytics_suspicious_ips_window(hours, min failures,
  min usernames)` is the one definition, read by the admin's security page and the REST API
  (analytics.selectors.suspicious_ips) with the range chosen there; the view keeps its name for
  Grafana and the changelist, over the last 24 hours with the stored thresholds.

The function runs with its owner's rights (SECURITY DEFINER, its search path fixed at
creation), as a view does: Grafana's read-only role may call it and read the view, and still
reads nothing of audit_event itself. The condition on the hour (see 0007) lets PostgreSQL read
the window through the failed-login hour index.
"""

import importlib

from django.contrib.postgres.fields import ArrayField
from django.db import migrations, models

grafana_0003 = importlib.import_module("analytics.migrations.0003_grafana_role")

FORWARD = """
DROP VIEW analytics_suspicious_ips;

CREATE FUNCTION analytics_suspicious_ips_window(
    p_hours integer, p_min_failures integer, p_min_usernames integer
) RETURNS TABLE (
    ip inet, user_agent_count integer, user_agents text[], attempts integer,
    usernames_tried integer, first_seen timestamptz, last_seen timestamptz
) LANGUAGE sql STABLE SECURITY DEFINER SET search_path FROM CURRENT AS $$
    SELECT ip,
           count(DISTINCT user_agent)::integer,
           (array_agg(DISTINCT user_agent ORDER BY user_agent))[1:10],
           count(*)::integer,
           count(DISTINCT lower(username))::integer,
           min(occurred_at), max(occurred_at)
    FROM audit_event
    WHERE event_type = 'login_failed' AND ip IS NOT NULL
      AND occurred_at >= analytics_now() - make_interval(hours => p_hours)
      AND (date_trunc('hour', occurred_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')
          >= (date_trunc('hour', (analytics_now() - make_interval(hours => p_hours))
                                 AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')
    GROUP BY ip
    HAVING count(*) >= p_min_failures OR count(DISTINCT lower(username)) >= p_min_usernames
$$;

CREATE VIEW analytics_suspicious_ips AS
SELECT host(ip) AS id, ip, user_agent_count, user_agents, attempts, usernames_tried,
       first_seen, last_seen
FROM analytics_suspicious_ips_window(
    24,
    analytics_setting_value('suspicious_ip_min_failures', 10),
    analytics_setting_value('suspicious_ip_min_usernames', 5)
);
"""

BACKWARD = """
DROP VIEW analytics_suspicious_ips;
DROP FUNCTION analytics_suspicious_ips_window(integer, integer, integer);

CREATE VIEW analytics_suspicious_ips AS
SELECT host(ip) || ' ' || md5(user_agent) AS id, ip, user_agent,
       count(*)::integer AS attempts,
       count(DISTINCT lower(username))::integer AS usernames_tried,
       min(occurred_at) AS first_seen, max(occurred_at) AS last_seen
FROM audit_event
WHERE event_type = 'login_failed' AND ip IS NOT NULL
  AND occurred_at >= analytics_now() - interval '24 hours'
  AND (date_trunc('hour', occurred_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')
      >= (date_trunc('hour', (analytics_now() - interval '24 hours') AT TIME ZONE 'UTC')
          AT TIME ZONE 'UTC')
GROUP BY ip, user_agent;
"""


def run(sql: str):
    def apply(apps, schema_editor) -> None:
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(sql)
            cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [grafana_0003.ROLE])
            if cursor.fetchone():
                grafana_0003.grant_read(cursor)

    return apply


class Migration(migrations.Migration):
    dependencies = [("analytics", "0007_suspicious_ips_by_hour_index")]

    operations = [
        migrations.RunPython(run(FORWARD), run(BACKWARD)),
        migrations.RemoveField(model_name="suspiciousip", name="user_agent"),
        migrations.AddField(
            model_name="suspiciousip",
            name="user_agent_count",
            field=models.IntegerField(default=0),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="suspiciousip",
            name="user_agents",
            field=ArrayField(base_field=models.TextField(), default=list, size=None),
            preserve_default=False,
        ),
    ]
