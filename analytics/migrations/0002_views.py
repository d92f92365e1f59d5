"""One SQL definition of every analytic, read by the admin and by Grafana alike.

Time windows, all in UTC:
* "24 h"  — the current hour and the 23 before it (hourly buckets);
* "7 d" / "30 d" — the current UTC day and the 6 / 29 before it (daily buckets);
* a user is *active* on a day when one of its sessions started or made an API call that day;
* a session's *duration* is the time it was in use: first to last activity.
Thresholds come from analytics_setting (copied from the SESSIONHUB settings).

Materialized (refreshed CONCURRENTLY by `refresh_analytics` / beat): analytics_user_day,
analytics_user_stats, analytics_daily. Plain views read them or the audit tables.
"""

from django.db import migrations

FUNCTIONS = """
-- "Now" for every analytic. A session may pin it (SET sessionhub.now = '...'), which is how
-- the tests check exact numbers against a fixed clock; Grafana and the admin never do.
CREATE FUNCTION analytics_now() RETURNS timestamptz LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(current_setting('sessionhub.now', true), '')::timestamptz, now())
$$;

CREATE FUNCTION analytics_setting_value(p_name text, p_default integer) RETURNS integer
LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT value FROM analytics_setting WHERE name = p_name), p_default)
$$;

CREATE FUNCTION analytics_utc_today() RETURNS date LANGUAGE sql STABLE AS $$
    SELECT (analytics_now() AT TIME ZONE 'UTC')::date
$$;

CREATE FUNCTION analytics_session_status(p_last_active timestamptz) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN p_last_active > analytics_now() - make_interval(
            secs => analytics_setting_value('active_window_seconds', 300)) THEN 'active_now'
        WHEN p_last_active > analytics_now() - make_interval(
            secs => analytics_setting_value('recent_window_seconds', 3600)) THEN 'recent'
        ELSE 'idle'
    END
$$;
"""

USER_DAY = """
CREATE MATERIALIZED VIEW analytics_user_day AS
SELECT user_id, day, sum(api_calls)::bigint AS api_calls, sum(sessions)::integer AS sessions_started
FROM (
    SELECT user_id, (hour AT TIME ZONE 'UTC')::date AS day, api_calls, 0 AS sessions
    FROM audit_session_hour
    UNION ALL
    SELECT user_id, (started_at AT TIME ZONE 'UTC')::date, 0, 1
    FROM audit_session
) activity
GROUP BY user_id, day;
CREATE UNIQUE INDEX analytics_user_day_pk ON analytics_user_day (user_id, day);
CREATE INDEX analytics_user_day_day ON analytics_user_day (day);
"""

USER_STATS = """
CREATE MATERIALIZED VIEW analytics_user_stats AS
WITH last_24h AS (
    SELECT user_id, sum(api_calls)::bigint AS calls
    FROM audit_session_hour
    WHERE hour >= (date_trunc('hour', analytics_now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')
                  - interval '23 hours'
    GROUP BY user_id
), last_30d AS (
    SELECT user_id,
           coalesce(sum(api_calls) FILTER (WHERE day >= analytics_utc_today() - 6), 0)::bigint
               AS calls_7d,
           sum(api_calls)::bigint AS calls_30d,
           count(*)::integer AS days_active_30d
    FROM analytics_user_day
    WHERE day >= analytics_utc_today() - 29
    GROUP BY user_id
)
SELECT coalesce(d.user_id, h.user_id) AS user_id,
       coalesce(h.calls, 0)::bigint AS api_calls_24h,
       coalesce(d.calls_7d, 0)::bigint AS api_calls_7d,
       coalesce(d.calls_30d, 0)::bigint AS api_calls_30d,
       coalesce(d.days_active_30d, 0) AS days_active_30d
FROM last_30d d FULL JOIN last_24h h ON h.user_id = d.user_id;
CREATE UNIQUE INDEX analytics_user_stats_pk ON analytics_user_stats (user_id);
CREATE INDEX analytics_user_stats_24h ON analytics_user_stats (api_calls_24h DESC, user_id);
CREATE INDEX analytics_user_stats_7d ON analytics_user_stats (api_calls_7d DESC, user_id);
CREATE INDEX analytics_user_stats_30d ON analytics_user_stats (api_calls_30d DESC, user_id);
CREATE INDEX analytics_user_stats_days ON analytics_user_stats (days_active_30d DESC, user_id);
"""

DAILY = """
CREATE MATERIALIZED VIEW analytics_daily AS
WITH days AS (
    SELECT generate_series(analytics_utc_today() - 89, analytics_utc_today(), '1 day')::date AS day
), active AS (
    SELECT d.day,
           count(DISTINCT ud.user_id) FILTER (WHERE ud.day = d.day)::integer AS dau,
           count(DISTINCT ud.user_id) FILTER (WHERE ud.day > d.day - 7)::integer AS wau,
           count(DISTINCT ud.user_id)::integer AS mau,
           coalesce(sum(ud.sessions_started) FILTER (WHERE ud.day = d.day), 0)::integer
               AS sessions_started,
           coalesce(sum(ud.api_calls) FILTER (WHERE ud.day = d.day), 0)::bigint AS api_calls
    FROM days d
    LEFT JOIN analytics_user_day ud ON ud.day > d.day - 30 AND ud.day <= d.day
    GROUP BY d.day
), events AS (
    SELECT (occurred_at AT TIME ZONE 'UTC')::date AS day,
           count(*) FILTER (WHERE event_type = 'login')::integer AS logins,
           count(*) FILTER (WHERE event_type = 'login_failed')::integer AS failed_logins
    FROM audit_event
    WHERE event_type IN ('login', 'login_failed')
      AND occurred_at >= (analytics_utc_today() - 89)::timestamp AT TIME ZONE 'UTC'
    GROUP BY 1
), durations AS (
    SELECT (ended_at AT TIME ZONE 'UTC')::date AS day,
           percentile_cont(0.5) WITHIN GROUP (
               ORDER BY extract(epoch FROM last_active - started_at)) AS p50,
           percentile_cont(0.95) WITHIN GROUP (
               ORDER BY extract(epoch FROM last_active - started_at)) AS p95
    FROM audit_session
    WHERE ended_at >= (analytics_utc_today() - 89)::timestamp AT TIME ZONE 'UTC'
    GROUP BY 1
)
SELECT a.day, a.dau, a.wau, a.mau, a.sessions_started, a.api_calls,
       coalesce(e.logins, 0) AS logins, coalesce(e.failed_logins, 0) AS failed_logins,
       du.p50 AS duration_p50, du.p95 AS duration_p95
FROM active a
LEFT JOIN events e ON e.day = a.day
LEFT JOIN durations du ON du.day = a.day;
CREATE UNIQUE INDEX analytics_daily_pk ON analytics_daily (day);
"""

VIEWS = """
CREATE VIEW analytics_user_activity AS
SELECT u.id AS user_id, u.username, u.email, u.is_active, u.date_joined,
       a.first_active, a.last_active,
       coalesce(s.api_calls_24h, 0) AS api_calls_24h,
       coalesce(s.api_calls_7d, 0) AS api_calls_7d,
       coalesce(s.api_calls_30d, 0) AS api_calls_30d,
       coalesce(s.days_active_30d, 0) AS days_active_30d,
       CASE WHEN a.last_active IS NULL THEN 'idle'
            ELSE analytics_session_status(a.last_active) END AS status,
       a.last_active IS NULL AS never_active
FROM accounts_user u
LEFT JOIN audit_user_activity a ON a.user_id = u.id
LEFT JOIN analytics_user_stats s ON s.user_id = u.id;

CREATE VIEW analytics_power_users AS
SELECT '24h:' || s.user_id AS id, '24h'::text AS "window", s.user_id, u.username,
       s.api_calls_24h AS api_calls, s.days_active_30d, a.last_active
FROM analytics_user_stats s JOIN accounts_user u ON u.id = s.user_id
LEFT JOIN audit_user_activity a ON a.user_id = s.user_id
WHERE s.api_calls_24h > 0
UNION ALL
SELECT '7d:' || s.user_id, '7d', s.user_id, u.username, s.api_calls_7d, s.days_active_30d,
       a.last_active
FROM analytics_user_stats s JOIN accounts_user u ON u.id = s.user_id
LEFT JOIN audit_user_activity a ON a.user_id = s.user_id
WHERE s.api_calls_7d > 0
UNION ALL
SELECT '30d:' || s.user_id, '30d', s.user_id, u.username, s.api_calls_30d, s.days_active_30d,
       a.last_active
FROM analytics_user_stats s JOIN accounts_user u ON u.id = s.user_id
LEFT JOIN audit_user_activity a ON a.user_id = s.user_id
WHERE s.days_active_30d > 0;

CREATE VIEW analytics_idle_users AS
SELECT u.id AS user_id, u.username, u.email, u.date_joined, a.last_active,
       CASE WHEN a.last_active IS NULL THEN NULL
            ELSE floor(extract(epoch FROM analytics_now() - a.last_active) / 86400)::integer
       END AS idle_days,
       a.last_active IS NULL AS never_active
FROM accounts_user u
LEFT JOIN audit_user_activity a ON a.user_id = u.id
WHERE u.is_active
  AND (a.last_active IS NULL
       OR a.last_active <= analytics_now() - make_interval(
           days => analytics_setting_value('idle_user_days', 7)));

CREATE VIEW analytics_sessions_by_status AS
SELECT st.status, coalesce(c.sessions, 0)::integer AS sessions
FROM (VALUES ('active_now', 1), ('recent', 2), ('idle', 3)) AS st(status, ord)
LEFT JOIN (
    SELECT analytics_session_status(last_active) AS status, count(*) AS sessions
    FROM audit_session WHERE ended_at IS NULL
    GROUP BY 1
) c ON c.status = st.status
ORDER BY st.ord;

CREATE VIEW analytics_failed_logins_hourly AS
SELECT date_trunc('hour', occurred_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS hour,
       reason, count(*)::integer AS failures
FROM audit_event
WHERE event_type = 'login_failed' AND occurred_at >= analytics_now() - interval '30 days'
GROUP BY 1, 2;

CREATE VIEW analytics_suspicious_ips AS
SELECT host(ip) || ' ' || md5(user_agent) AS id, ip, user_agent,
       count(*)::integer AS attempts,
       count(DISTINCT lower(username))::integer AS usernames_tried,
       min(occurred_at) AS first_seen, max(occurred_at) AS last_seen
FROM audit_event
WHERE event_type = 'login_failed' AND ip IS NOT NULL
  AND occurred_at >= analytics_now() - interval '24 hours'
GROUP BY ip, user_agent;

CREATE VIEW analytics_session_durations AS
SELECT b.ord, b.bucket, b.upper_seconds, count(s.ord)::integer AS sessions
FROM (VALUES (1, '<= 1 min', 60), (2, '1-5 min', 300), (3, '5-15 min', 900),
             (4, '15 min-1 h', 3600), (5, '1 h-1 d', 86400), (6, '> 1 d', NULL))
     AS b(ord, bucket, upper_seconds)
LEFT JOIN (
    SELECT CASE WHEN duration <= 60 THEN 1 WHEN duration <= 300 THEN 2
                WHEN duration <= 900 THEN 3 WHEN duration <= 3600 THEN 4
                WHEN duration <= 86400 THEN 5 ELSE 6 END AS ord
    FROM (SELECT extract(epoch FROM last_active - started_at) AS duration
          FROM audit_session
          WHERE ended_at >= analytics_now() - interval '30 days') ended
) s ON s.ord = b.ord
GROUP BY b.ord, b.bucket, b.upper_seconds
ORDER BY b.ord;
"""

DROP = """
DROP VIEW IF EXISTS analytics_session_durations, analytics_suspicious_ips,
    analytics_failed_logins_hourly, analytics_sessions_by_status, analytics_idle_users,
    analytics_power_users, analytics_user_activity;
DROP MATERIALIZED VIEW IF EXISTS analytics_daily, analytics_user_stats, analytics_user_day;
DROP FUNCTION IF EXISTS analytics_session_status(timestamptz), analytics_utc_today(),
    analytics_setting_value(text, integer), analytics_now();
"""


class Migration(migrations.Migration):
    dependencies = [
        ("analytics", "0001_initial"),
        ("audit", "0001_initial"),
        ("accounts", "0001_initial"),
    ]

    operations = [
        migrations.RunSQL(FUNCTIONS + USER_DAY + USER_STATS + DAILY + VIEWS, DROP),
    ]
