"""The per-hour API calls now live inside each audit_session row (hourly_calls, a JSON object
{"<epoch of the hour>": calls}), so the sync writes one row per session. The two rollups that
read them are rebuilt; every other definition is the one of 0002, recreated unchanged because
the views depend on the rollups. The Grafana role is granted the new relations again.
"""

import importlib

from django.db import migrations

views_0002 = importlib.import_module("analytics.migrations.0002_views")
grafana_0003 = importlib.import_module("analytics.migrations.0003_grafana_role")

# One row per (session, hour with calls).
SESSION_HOURS = """
    SELECT s.user_id, to_timestamp(h.key::bigint) AS hour, h.value::bigint AS api_calls
    FROM audit_session s CROSS JOIN LATERAL jsonb_each_text(s.hourly_calls) AS h(key, value)
"""

USER_DAY = f"""
CREATE MATERIALIZED VIEW analytics_user_day AS
SELECT user_id, day, sum(api_calls)::bigint AS api_calls, sum(sessions)::integer AS sessions_started
FROM (
    SELECT user_id, (hour AT TIME ZONE 'UTC')::date AS day, api_calls, 0 AS sessions
    FROM ({SESSION_HOURS}) session_hours
    UNION ALL
    SELECT user_id, (started_at AT TIME ZONE 'UTC')::date, 0, 1
    FROM audit_session
) activity
GROUP BY user_id, day;
CREATE UNIQUE INDEX analytics_user_day_pk ON analytics_user_day (user_id, day);
CREATE INDEX analytics_user_day_day ON analytics_user_day (day);
"""  # noqa: S608 - built from constants

USER_STATS = """
CREATE MATERIALIZED VIEW analytics_user_stats AS
WITH window_24h AS (
    SELECT (date_trunc('hour', analytics_now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')
           - interval '23 hours' AS start
), last_24h AS (
    SELECT s.user_id, sum(h.value::bigint)::bigint AS calls
    FROM window_24h w, audit_session s
    CROSS JOIN LATERAL jsonb_each_text(s.hourly_calls) AS h(key, value)
    WHERE s.last_active >= w.start AND h.key::bigint >= extract(epoch FROM w.start)
    GROUP BY s.user_id
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


def rebuild(user_day: str, user_stats: str):
    def run(apps, schema_editor) -> None:
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(views_0002.DROP)
            cursor.execute(
                views_0002.FUNCTIONS + user_day + user_stats + views_0002.DAILY + views_0002.VIEWS
            )
            cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [grafana_0003.ROLE])
            if cursor.fetchone():
                grafana_0003.grant_read(cursor)

    return run


class Migration(migrations.Migration):
    dependencies = [
        ("analytics", "0003_grafana_role"),
        ("audit", "0003_session_hourly_calls"),
    ]

    operations = [
        migrations.RunPython(
            rebuild(USER_DAY, USER_STATS),
            rebuild(views_0002.USER_DAY, views_0002.USER_STATS),
        ),
    ]
