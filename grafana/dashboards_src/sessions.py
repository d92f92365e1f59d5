"""User Session Analytics: live sessions, users, logins and security, durations, sync, alerts.

Where each panel reads:
* Prometheus for what is live or a rate: the app computes its business metrics from Redis at
  scrape time, so they are current to the scrape (sessions, calls, failures, sync state).
  Every app replica exposes the same, global figures (they come from the shared Redis), so
  they are aggregated with `max`, never `sum` (which would count them once per replica).
* PostgreSQL for anything per user or per IP (never a Prometheus label) and for the history
  of days: the analytics_* views, one SQL definition shared with the Django admin.

"Sessions by status" reads Prometheus `sessions_by_status`: it is the live-session store's own
figure (Redis), current to the scrape, while the PostgreSQL view `analytics_sessions_by_status`
only knows what the audit sync has copied so far (it stays in the admin, and both apply the
same active/recent windows).
"""

from grafana_foundation_sdk.builders import barchart, gauge, heatmap, piechart, stat, table
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import timeseries as ts
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dashboard_models
from grafana_foundation_sdk.models import heatmap as heatmap_models
from grafana_foundation_sdk.models import piechart as piechart_models

from .common import (
    GREEN,
    POSTGRES,
    PROMETHEUS,
    custom_variable,
    dashboard,
    finish,
    legend,
    organize,
    place,
    prom,
    reduce_last,
    row,
    sql,
    sql_series,
    thresholds,
)

UID = "sessionhub-sessions"
DAILY_RANGE = "30d"  # panels on analytics_daily show the last 30 UTC days
HOURLY_RANGE = "7d"  # analytics_failed_logins_hourly holds 30 days; a week is readable

# --- PostgreSQL (per user, per IP, per day) ------------------------------------------------------

TOP_POWER_USERS = """
SELECT username AS "user", api_calls AS "API calls", days_active_30d AS "days active (30 d)",
       last_active AS "last active"
FROM analytics_power_users
WHERE "window" = '$window'
ORDER BY api_calls DESC, username
LIMIT '$top'::integer
"""

IDLE_USERS = """
SELECT idle_users AS "idle users", never_active AS "never active"
FROM analytics_idle_user_count
"""

SUSPICIOUS_IPS = """
SELECT host(ip) AS "IP", attempts AS "failed logins", usernames_tried AS "usernames tried",
       user_agent_count AS "user agents", array_to_string(user_agents, ', ') AS "first 10 agents",
       first_seen AS "first seen", last_seen AS "last seen"
FROM analytics_suspicious_ips
ORDER BY usernames_tried DESC, attempts DESC, last_seen DESC
LIMIT 50
"""

FAILED_LOGINS_HOURLY = """
SELECT hour AS "time", reason AS metric, failures
FROM analytics_failed_logins_hourly
WHERE $__timeFilter(hour)
ORDER BY 1, 2
"""

# analytics_daily.day is a UTC date: $__timeFilter compares it with the range's ends cast to
# dates, and the day is plotted at its UTC midnight.
ACTIVE_USERS = """
SELECT day::timestamp AT TIME ZONE 'UTC' AS "time", dau AS "DAU", wau AS "WAU", mau AS "MAU"
FROM analytics_daily
WHERE $__timeFilter(day)
ORDER BY 1
"""

STICKINESS = """
SELECT day::timestamp AT TIME ZONE 'UTC' AS "time", dau::float8 / nullif(mau, 0) AS "DAU / MAU"
FROM analytics_daily
WHERE $__timeFilter(day)
ORDER BY 1
"""

CALLS_PER_DAY = """
SELECT day::timestamp AT TIME ZONE 'UTC' AS "time", api_calls AS "API calls",
       sessions_started AS "sessions started"
FROM analytics_daily
WHERE $__timeFilter(day)
ORDER BY 1
"""

LOGINS_PER_DAY = """
SELECT day::timestamp AT TIME ZONE 'UTC' AS "time", logins, failed_logins AS "failed logins"
FROM analytics_daily
WHERE $__timeFilter(day)
ORDER BY 1
"""

DURATION_PER_DAY = """
SELECT day::timestamp AT TIME ZONE 'UTC' AS "time", duration_p50 AS "p50", duration_p95 AS "p95"
FROM analytics_daily
WHERE $__timeFilter(day) AND duration_p50 IS NOT NULL
ORDER BY 1
"""

DURATION_BUCKETS = """
SELECT bucket AS "duration", sessions AS "ended sessions"
FROM analytics_session_durations
ORDER BY ord
"""

# --- Prometheus (live, rates) --------------------------------------------------------------------

ACTIVE_SESSIONS = "max(sessions_active_total)"
SESSIONS_BY_STATUS = "max by (status) (sessions_by_status)"
# The legend says what the admin says: accounts.livesessions.SessionStatus and its labels
# (tests/grafana/test_dashboards.py holds this to them; the generator does not import Django).
STATUS_LABELS = {"active_now": "active now", "recent": "recent", "inactive": "inactive"}


def with_display_names(panel: piechart.Panel, names: dict[str, str]) -> piechart.Panel:
    """Show each series (by its legend name) under the name given for it."""
    for series, name in names.items():
        panel = panel.override_by_name(
            series, [dashboard_models.DynamicConfigValue(id_val="displayName", value=name)]
        )
    return panel


LOCKOUTS_ACTIVE = "max(lockouts_active)"
API_CALLS_RATE = "max(rate(api_calls_total[$__rate_interval]))"
FAILED_LOGINS_BY_REASON = "max by (reason) (rate(login_failures_total[5m]))"
LOGINS_RATE = "max(rate(sessions_started_total[5m]))"
FAILURES_RATE = "sum(max by (reason) (rate(login_failures_total[5m])))"
DURATION_HEATMAP = "max by (le) (increase(session_duration_seconds_bucket[$__rate_interval]))"
SYNC_LAG = "max(sync_lag_seconds)"
SYNC_BACKLOG = "max by (kind) (sync_backlog)"
SYNC_AGE = "time() - max(sync_last_success_timestamp_seconds)"
ALERTS_FIRING = 'ALERTS{alertstate="firing"}'


def _daily(panel, title: str, query: str, description: str, unit: str = "short"):
    return (
        place(panel.title(title), 12, 8, POSTGRES, description)
        .with_target(sql_series(query))
        .time_from(DAILY_RANGE)
        .unit(unit)
        .legend(legend())
    )


def build():
    board = dashboard(
        UID,
        "User Session Analytics",
        "Live JWT sessions, power users, idle users and security anomalies of the sessionhub "
        "API. Live figures and rates come from Prometheus; anything per user, per IP or per "
        "day from the PostgreSQL analytics views (the same ones the Django admin shows).",
    )
    board = board.with_variable(
        custom_variable("window", "Power-user window", ["24h", "7d", "30d"], "24h")
    ).with_variable(custom_variable("top", "Top N", ["5", "10", "20", "50"], "10"))

    # --- Live ---
    board = board.with_row(row("Live sessions"))
    board = board.with_panel(
        place(
            gauge.Panel().title("Active sessions"),
            5,
            8,
            PROMETHEUS,
            "Sessions with API activity in the last 5 minutes (the live-session store).",
        )
        .with_target(prom(ACTIVE_SESSIONS, "active", instant=True))
        .reduce_options(reduce_last())
        .min(0)
        .thresholds(GREEN)
        .show_threshold_markers(False)
    )
    board = board.with_panel(
        place(
            with_display_names(piechart.Panel().title("Sessions by status"), STATUS_LABELS),
            7,
            8,
            PROMETHEUS,
            "Open sessions by their last activity: active now (5 min), recent (1 h), inactive. "
            "From Prometheus `sessions_by_status`, computed from Redis at every scrape; the "
            "PostgreSQL view only sees sessions once the audit sync has copied them.",
        )
        .with_target(prom(SESSIONS_BY_STATUS, "{{status}}", instant=True))
        .pie_type(piechart_models.PieChartType.DONUT)
        .reduce_options(reduce_last())
        .display_labels([piechart_models.PieChartLabels.VALUE])
        .legend(
            piechart.PieChartLegendOptions()
            .show_legend(True)
            .display_mode(cm.LegendDisplayMode.TABLE)
            .placement(cm.LegendPlacement.RIGHT)
            .values([piechart_models.PieChartLegendValues.VALUE])
        )
    )
    board = board.with_panel(
        place(
            stat.Panel().title("Lock-outs in force"),
            4,
            8,
            PROMETHEUS,
            "Login lock-outs (per user and IP, or per IP) in force now.",
        )
        .with_target(prom(LOCKOUTS_ACTIVE, "lock-outs", instant=True))
        .reduce_options(reduce_last())
        .thresholds(thresholds((None, "green"), (1, "orange")))
    )
    board = board.with_panel(
        place(
            ts.Panel().title("API calls/s"),
            8,
            8,
            PROMETHEUS,
            "Tracked API calls (authenticated requests) per second.",
        )
        .with_target(prom(API_CALLS_RATE, "API calls/s"))
        .unit("reqps")
        .min(0)
        .legend(legend())
    )

    # --- Logins and security ---
    board = board.with_row(row("Logins and security"))
    board = board.with_panel(
        place(
            ts.Panel().title("Failed logins by reason"),
            12,
            8,
            PROMETHEUS,
            "Failed login attempts per second, by reason (bad_password, unknown_user, "
            "inactive, throttled); never by user.",
        )
        .with_target(prom(FAILED_LOGINS_BY_REASON, "{{reason}}"))
        .unit("cps")
        .min(0)
        .legend(legend("mean", "max", table=True))
    )
    board = board.with_panel(
        place(
            ts.Panel().title("Logins vs failed logins"),
            12,
            8,
            PROMETHEUS,
            "Successful logins (sessions opened) and failed attempts, per second.",
        )
        .with_target(prom(LOGINS_RATE, "logins", "A"))
        .with_target(prom(FAILURES_RATE, "failed logins", "B"))
        .unit("cps")
        .min(0)
        .legend(legend("mean", "max", table=True))
    )
    board = board.with_panel(
        place(
            table.Panel().title("Suspicious IPs (last 24 h)"),
            14,
            9,
            POSTGRES,
            "Addresses past the threshold in the last 24 hours (SUSPICIOUS_IP_MIN_FAILURES "
            "failed logins or SUSPICIOUS_IP_MIN_USERNAMES usernames), one row each, the most "
            "usernames tried first (credential stuffing tries many).",
        )
        .with_target(sql(SUSPICIOUS_IPS))
        .filterable(True)
        .thresholds(GREEN)
    )
    board = board.with_panel(
        place(
            ts.Panel().title("Failed logins per hour (audit trail)"),
            10,
            9,
            POSTGRES,
            "Failed logins per UTC hour and reason, from the audit trail in PostgreSQL.",
        )
        .with_target(sql_series(FAILED_LOGINS_HOURLY))
        .time_from(HOURLY_RANGE)
        .draw_style(cm.GraphDrawStyle.BARS)
        .fill_opacity(80)
        .stacking(common_builders.StackingConfig().mode(cm.StackingMode.NORMAL))
        .legend(legend())
    )

    # --- Users ---
    board = board.with_row(row("Users"))
    board = board.with_panel(
        place(
            table.Panel().title("Top power users ($window)"),
            14,
            9,
            POSTGRES,
            "Users by API calls summed over the window (24h: the current hour and the 23 "
            "before it; 7d/30d: the current UTC day and the days before it).",
        )
        .with_target(sql(TOP_POWER_USERS))
        .sort_by([common_builders.TableSortByFieldState().display_name("API calls").desc(True)])
        .thresholds(GREEN)
    )
    board = board.with_panel(
        place(
            stat.Panel().title("Idle users"),
            4,
            9,
            POSTGRES,
            "Active accounts without activity for at least the idle threshold (7 days unless "
            "configured otherwise), including those never active.",
        )
        .with_target(sql(IDLE_USERS))
        .reduce_options(reduce_last())
        .thresholds(GREEN)
    )
    board = board.with_panel(
        _daily(
            ts.Panel(),
            "Stickiness (DAU / MAU)",
            STICKINESS,
            "Share of the month's active users who were active that day (UTC).",
            "percentunit",
        )
        .span(6)
        .height(9)
        .min(0)
        .max(1)
    )
    board = board.with_panel(
        _daily(
            ts.Panel(),
            "Daily, weekly and monthly active users",
            ACTIVE_USERS,
            "Users active that UTC day, in the 7 days and in the 30 days ending that day.",
        ).min(0)
    )
    board = board.with_panel(
        _daily(
            ts.Panel(),
            "API calls and sessions per day",
            CALLS_PER_DAY,
            "Tracked API calls and sessions started, per UTC day.",
        )
        .draw_style(cm.GraphDrawStyle.BARS)
        .min(0)
    )
    board = board.with_panel(
        _daily(
            ts.Panel(),
            "Logins and failed logins per day",
            LOGINS_PER_DAY,
            "Successful and failed logins per UTC day, from the audit trail.",
        )
        .draw_style(cm.GraphDrawStyle.BARS)
        .min(0)
    )

    # --- Session durations ---
    board = board.with_row(row("Session durations"))
    board = board.with_panel(
        place(
            heatmap.Panel().title("Session duration distribution"),
            12,
            8,
            PROMETHEUS,
            "Ended sessions by duration (first to last activity), from the "
            "session_duration_seconds histogram.",
        )
        .with_target(prom(DURATION_HEATMAP, "{{le}}", fmt="heatmap"))
        .calculate(False)
        .y_axis(heatmap.YAxisConfig().unit("s"))
        .color(
            heatmap.HeatmapColorOptions()
            .mode(heatmap_models.HeatmapColorMode.SCHEME)
            .scheme("Oranges")
            .scale(heatmap_models.HeatmapColorScale.EXPONENTIAL)
            .exponent(0.5)
        )
        .cell_values(heatmap.CellValues().unit("short"))
    )
    board = board.with_panel(
        place(
            barchart.Panel().title("Ended sessions by duration (30 d)"),
            6,
            8,
            POSTGRES,
            "Sessions that ended in the last 30 days, by duration bucket (audit trail).",
        )
        .with_target(sql(DURATION_BUCKETS))
        .x_field("duration")
        .show_value(cm.VisibilityMode.AUTO)
        .thresholds(GREEN)
    )
    board = board.with_panel(
        _daily(
            ts.Panel(),
            "Session duration p50 / p95 per day",
            DURATION_PER_DAY,
            "Median and 95th percentile duration of the sessions that ended each UTC day.",
            "s",
        )
        .span(6)
        .min(0)
    )

    # --- Audit sync and alerts ---
    board = board.with_row(row("Audit sync and alerts"))
    board = board.with_panel(
        place(
            ts.Panel().title("Sync lag"),
            8,
            7,
            PROMETHEUS,
            "Age of the oldest event not yet copied from Redis to PostgreSQL (0 when none).",
        )
        .with_target(prom(SYNC_LAG, "lag"))
        .unit("s")
        .min(0)
        .legend(legend())
    )
    board = board.with_panel(
        place(
            ts.Panel().title("Sync backlog"),
            8,
            7,
            PROMETHEUS,
            "Sessions and events waiting for the audit sync.",
        )
        .with_target(prom(SYNC_BACKLOG, "{{kind}}"))
        .min(0)
        .legend(legend())
    )
    board = board.with_panel(
        place(
            stat.Panel().title("Since the last successful sync"),
            8,
            7,
            PROMETHEUS,
            "Time since the audit sync last committed (very large when it never has).",
        )
        .with_target(prom(SYNC_AGE, "age", instant=True))
        .reduce_options(reduce_last())
        .unit("s")
        .thresholds(thresholds((None, "green"), (60, "orange"), (300, "red")))
    )
    board = board.with_panel(
        place(
            table.Panel().title("Alerts firing"),
            24,
            7,
            PROMETHEUS,
            "Prometheus alerts firing now (routed by Alertmanager; Grafana does no alerting).",
        )
        .with_target(prom(ALERTS_FIRING, instant=True, fmt="table"))
        .with_transformation(organize(["Time", "Value", "__name__", "alertstate"]))
        .thresholds(GREEN)
    )
    return finish(board)
