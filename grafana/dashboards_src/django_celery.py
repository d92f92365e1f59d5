"""Django + Celery: the app's HTTP traffic, database and cache use, and its Celery tasks.

django-prometheus' families are per process (summed over gunicorn workers and replicas); the
Celery figures are written to Redis by the workers and exposed by the app, the same global
figures by every replica: they are aggregated with `max`.
"""

from .common import (
    dashboard,
    finish,
    prom,
    row,
    series_panel,
    stat_panel,
)

UID = "sessionhub-django-celery"
RI = "[$__rate_interval]"

REQUESTS = f"sum(rate(django_http_requests_total_by_view_transport_method_total{RI}))"
REQUESTS_BY_VIEW = (
    f"sum by (view) (rate(django_http_requests_total_by_view_transport_method_total{RI}))"
)
LATENCY_BUCKETS = f"rate(django_http_requests_latency_seconds_by_view_method_bucket{RI})"
LATENCY_P50 = f"histogram_quantile(0.5, sum by (le, view) ({LATENCY_BUCKETS}))"
LATENCY_P95 = f"histogram_quantile(0.95, sum by (le, view) ({LATENCY_BUCKETS}))"
LATENCY_P95_ALL = f"histogram_quantile(0.95, sum by (le) ({LATENCY_BUCKETS}))"
RESPONSES = "django_http_responses_total_by_status_view_method_total"
RESPONSES_BY_STATUS = f"sum by (status) (rate({RESPONSES}{RI}))"
ERRORS_BY_VIEW = f'sum by (status, view) (rate({RESPONSES}{{status=~"[45].."}}{RI}))'
SERVER_ERROR_RATIO = (
    f'(sum(rate({RESPONSES}{{status=~"5.."}}{RI})) or vector(0)) '
    f"/ clamp_min(sum(rate({RESPONSES}{RI})), 1e-9)"
)
DB_QUERIES = f"sum by (alias) (rate(django_db_execute_total{RI}))"
DB_LATENCY_BUCKETS = f"rate(django_db_query_duration_seconds_bucket{RI})"
DB_LATENCY_P50 = f"histogram_quantile(0.5, sum by (le) ({DB_LATENCY_BUCKETS}))"
DB_LATENCY_P95 = f"histogram_quantile(0.95, sum by (le) ({DB_LATENCY_BUCKETS}))"
DB_CONNECTIONS = f"sum(rate(django_db_new_connections_total{RI}))"
DB_ERRORS = f"sum(rate(django_db_errors_total{RI})) or vector(0)"
CACHE_HITS = f"sum(rate(django_cache_get_hits_total{RI}))"
CACHE_MISSES = f"sum(rate(django_cache_get_misses_total{RI}))"
TASKS_SUCCEEDED = f'max by (task) (rate(celery_tasks_total{{state="succeeded"}}{RI}))'
TASKS_FAILED = f'max by (task, state) (rate(celery_tasks_total{{state=~"failed|retried"}}{RI}))'
TASK_BUCKETS = f"max by (le, task) (rate(celery_task_duration_seconds_bucket{RI}))"
TASK_P50 = f"histogram_quantile(0.5, {TASK_BUCKETS})"
TASK_P95 = f"histogram_quantile(0.95, {TASK_BUCKETS})"
HEARTBEAT_AGE = "time() - max(celery_heartbeat_timestamp_seconds)"


def build():
    board = dashboard(
        UID,
        "Django + Celery",
        "The sessionhub app: HTTP requests, latency and errors by view, database and cache "
        "use (django-prometheus), and the Celery tasks and beat heartbeat.",
    )

    board = board.with_row(row("Overview"))
    board = board.with_panel(
        stat_panel("Requests/s", REQUESTS, "HTTP requests per second, all views.", "reqps")
    )
    board = board.with_panel(
        stat_panel(
            "p95 latency",
            LATENCY_P95_ALL,
            "95th percentile of the request latency, all views.",
            "s",
            steps=[(None, "green"), (0.5, "orange"), (1, "red")],
        )
    )
    board = board.with_panel(
        stat_panel(
            "5xx ratio",
            SERVER_ERROR_RATIO,
            "Share of responses that were server errors.",
            "percentunit",
            steps=[(None, "green"), (0.01, "orange"), (0.05, "red")],
        )
    )
    board = board.with_panel(
        stat_panel("DB queries/s", f"sum({DB_QUERIES})", "SQL statements per second.", "ops")
    )
    board = board.with_panel(
        stat_panel(
            "Beat heartbeat age",
            HEARTBEAT_AGE,
            "Time since a worker last ran the beat-scheduled heartbeat task (very large when "
            "never): Celery beat or the workers are down when it grows.",
            "s",
            steps=[(None, "green"), (120, "orange"), (300, "red")],
        )
    )
    board = board.with_panel(
        stat_panel(
            "Celery tasks/s",
            f"sum({TASKS_SUCCEEDED})",
            "Celery tasks that succeeded, per second.",
            "ops",
        )
    )

    board = board.with_row(row("HTTP"))
    board = board.with_panel(
        series_panel(
            "Requests/s by view",
            "HTTP requests per second, by Django view.",
            prom(REQUESTS_BY_VIEW, "{{view}}"),
            unit="reqps",
        )
    )
    board = board.with_panel(
        series_panel(
            "Responses/s by status",
            "HTTP responses per second, by status code.",
            prom(RESPONSES_BY_STATUS, "{{status}}"),
            unit="reqps",
        )
    )
    board = board.with_panel(
        series_panel(
            "Latency by view (p50 / p95)",
            "Median and 95th percentile request latency, by view.",
            prom(LATENCY_P50, "p50 {{view}}", "A"),
            prom(LATENCY_P95, "p95 {{view}}", "B"),
            unit="s",
        )
    )
    board = board.with_panel(
        series_panel(
            "Errors by status and view",
            "4xx and 5xx responses per second, by status and view (401/429 on the login view "
            "are refused credentials and throttling).",
            prom(ERRORS_BY_VIEW, "{{status}} {{view}}"),
            unit="reqps",
        )
    )

    board = board.with_row(row("Database and cache"))
    board = board.with_panel(
        series_panel(
            "DB queries/s",
            "SQL statements per second, by database alias; new connections per second; errors.",
            prom(DB_QUERIES, "{{alias}} queries", "A"),
            prom(DB_CONNECTIONS, "new connections", "B"),
            prom(DB_ERRORS, "errors", "C"),
            unit="ops",
        )
    )
    board = board.with_panel(
        series_panel(
            "DB query latency (p50 / p95)",
            "Median and 95th percentile SQL statement duration.",
            prom(DB_LATENCY_P50, "p50", "A"),
            prom(DB_LATENCY_P95, "p95", "B"),
            unit="s",
        )
    )
    board = board.with_panel(
        series_panel(
            "Cache hits / misses",
            "Django cache (Redis) lookups that hit or missed, per second. Empty while no code "
            "calls Django's cache: live sessions, throttles and metrics use Redis directly.",
            prom(CACHE_HITS, "hits", "A"),
            prom(CACHE_MISSES, "misses", "B"),
            unit="ops",
            width=24,
        )
    )

    board = board.with_row(row("Celery"))
    board = board.with_panel(
        series_panel(
            "Tasks succeeded/s by task",
            "Celery task throughput, by task.",
            prom(TASKS_SUCCEEDED, "{{task}}"),
            unit="ops",
            width=8,
        )
    )
    board = board.with_panel(
        series_panel(
            "Task failures and retries/s by task",
            "Celery tasks that failed or were retried, per second, by task.",
            prom(TASKS_FAILED, "{{state}} {{task}}"),
            unit="ops",
            width=8,
        )
    )
    board = board.with_panel(
        series_panel(
            "Task duration (p50 / p95)",
            "Median and 95th percentile run time of the tasks that succeeded, by task.",
            prom(TASK_P50, "p50 {{task}}", "A"),
            prom(TASK_P95, "p95 {{task}}", "B"),
            unit="s",
            width=8,
        )
    )
    return finish(board)
