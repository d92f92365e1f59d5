"""Report views and admin pages at scale: 1M users, 10M events.

The bench database is filled in bulk with SQL (`generate_series`), in time order as the
sync writes rows: 1,000,000 users, 2,000,000 sessions over 30 days (up to two active hours
each; a fifth of the users active; the last half hour's still open), and 10,000,000 events
(logins, refreshes, logouts, expiries, and one in 20 a failed login, from 5,000 IPs). The
rollups are refreshed, then:

* every analytics view is queried the way the admin and Grafana query it (top 20, a window,
  a count), 20 times: median and p95 server time;
* every admin report page is requested through Django's test client as a superuser, 20 times:
  median and p95, and the number of SQL queries per page;
* the index on audit_event.occurred_at: a one-day count with distinct users, with BRIN and
  with btree, and the size of each index.

The data stays in `sessionhub_bench` between runs (it takes minutes to build) and is rebuilt
when it is not the generator's: different row counts (bench_sync and bench_sizes empty the
audit tables, so a full `make bench` rebuilds it) or a changed generator.
"""

import hashlib
import statistics
import sys
import time

from . import common

USERS = 1_000_000
SESSIONS = 2_000_000
EVENTS = 10_000_000
REPEATS = 20

BUILD = [
    (
        "users",
        f"""
        INSERT INTO accounts_user (password, is_superuser, username, first_name, last_name, email,
                                   is_staff, is_active, date_joined)
        SELECT '!', false, 'scale' || g, '', '', 'scale' || g || '@bench.invalid', false, true,
               now() - make_interval(days => g % 400)
        FROM generate_series(1, {USERS}) g
    """,
    ),
    (
        "sessions",
        # In start order, with time-ordered ids, as logins create them; sessions whose last
        # activity is under 30 minutes old are still open, the others ended at the idle timeout.
        f"""
        INSERT INTO audit_session (sid, user_id, ip, user_agent, started_at, last_active, ended_at,
                                   end_reason, api_call_count, hourly_calls, generation,
                                   calls_before, hourly_before)
        SELECT lpad(to_hex((extract(epoch FROM t.start) * 1000)::bigint), 11, '0')
                   || left(md5(g::text), 16),
               u.first_id + (g::bigint * 7919) % ({USERS} / 5),
               ('10.' || (g % 250) || '.' || (g % 200) || '.' || (g % 199))::inet, 'scale/1.0',
               t.start, t.last, CASE WHEN t.ended THEN t.last + interval '30 minutes' END,
               CASE WHEN t.ended THEN 'idle_timeout' ELSE '' END, 30 + g % 200,
               jsonb_build_object(extract(epoch FROM date_trunc('hour', t.start))::bigint::text,
                                  30 + g % 200),
               0, 0, '{{}}'::jsonb
        FROM generate_series(1, {SESSIONS}) g,
             LATERAL (SELECT now() - interval '30 days'
                             + (g - 1) * (interval '30 days' / {SESSIONS}) AS start) s,
             LATERAL (SELECT s.start, s.start + make_interval(secs => (g::bigint * 37) % 7200)
                             AS last) l,
             LATERAL (SELECT l.start, l.last,
                             l.last < now() - interval '30 minutes' AS ended) t,
             (SELECT min(id) AS first_id FROM accounts_user WHERE username LIKE 'scale%') u
    """,
    ),
    (
        "user activity",
        """
        INSERT INTO audit_user_activity (user_id, first_active, last_active)
        SELECT user_id, min(started_at), max(last_active) FROM audit_session GROUP BY user_id
        ON CONFLICT DO NOTHING
    """,
    ),
    (
        "events",
        # In time order, as the sync writes them; one in 20 a failed login (from 5,000 IPs).
        f"""
        INSERT INTO audit_event (stream_id, event_type, user_id, username, ip, user_agent,
                                 session_id, reason, actor_id, occurred_at)
        SELECT g || '-0',
               CASE WHEN g % 20 = 0 THEN 'login_failed'
                    ELSE (ARRAY['login', 'token_refresh', 'token_refresh', 'token_refresh',
                                'token_refresh', 'token_refresh', 'logout',
                                'session_expired'])[1 + g % 8] END,
               CASE WHEN g % 20 = 0 THEN NULL
                    ELSE u.first_id + (g::bigint * 7919) % ({USERS} / 5) END,
               'scale' || (g % {USERS}), ('203.0.' || (g % 20) || '.' || (g % 250))::inet,
               'scale/1.0', '', CASE WHEN g % 20 = 0 THEN 'bad_password' ELSE '' END, NULL,
               now() - interval '30 days' + g * (interval '30 days' / {EVENTS})
        FROM generate_series(1, {EVENTS}) g,
             (SELECT min(id) AS first_id FROM accounts_user WHERE username LIKE 'scale%') u
    """,
    ),
]

VIEW_QUERIES = {
    "power users 24h (top 20)": """SELECT username, api_calls FROM analytics_power_users
        WHERE "window" = '24h' ORDER BY api_calls DESC LIMIT 20""",
    "power users 30d by days active": """SELECT username, days_active_30d
        FROM analytics_power_users WHERE "window" = '30d'
        ORDER BY days_active_30d DESC LIMIT 20""",
    # The kept count of active accounts minus those active within the threshold.
    "idle users (count)": "SELECT idle_users, never_active FROM analytics_idle_user_count",
    "idle users (first page)": """SELECT username, idle_days FROM analytics_idle_users
        ORDER BY last_active NULLS FIRST, user_id LIMIT 50""",
    "user activity (one user)": """SELECT * FROM analytics_user_activity
        WHERE user_id = (SELECT min(id) FROM accounts_user WHERE username LIKE 'scale%')""",
    "sessions by status": "SELECT * FROM analytics_sessions_by_status",
    "failed logins, 24 h by hour": """SELECT hour, sum(failures)
        FROM analytics_failed_logins_hourly WHERE hour >= now() - interval '24 hours'
        GROUP BY hour""",
    "suspicious IPs (top 20)": """SELECT ip, attempts, usernames_tried
        FROM analytics_suspicious_ips ORDER BY usernames_tried DESC LIMIT 20""",
    "session durations": "SELECT * FROM analytics_session_durations",
    "daily rollup (30 days)": "SELECT * FROM analytics_daily ORDER BY day DESC LIMIT 30",
}

PAGES = [
    ("overview", "/admin/"),
    ("power users 24h", "/admin/analytics/poweruser/"),
    ("power users 30d", "/admin/analytics/poweruser/?window=30d"),
    ("idle users", "/admin/analytics/idleuser/"),
    ("idle users >= 90 d", "/admin/analytics/idleuser/?idle=90"),
    ("user activity", "/admin/analytics/useractivity/"),
    ("suspicious IPs", "/admin/analytics/suspiciousip/"),
    ("session history", "/admin/audit/auditsession/?state=ended"),
    ("events", "/admin/audit/auditevent/"),
    ("security", "/admin/analytics/security/"),
    ("live sessions", "/admin/analytics/live-sessions/"),
    ("one user", "/admin/analytics/users/{user}/"),
    # The same reports through the staff API (the admin's session authenticates it).
    ("API overview", "/api/analytics/overview/"),
    ("API live tiles (polled every 3 s)", "/api/analytics/overview/live/"),
    ("API power users 24h", "/api/analytics/power-users/"),
    ("API idle users", "/api/analytics/idle-users/"),
    ("API session history", "/api/analytics/sessions/?state=ended"),
    ("API suspicious IPs", "/api/analytics/suspicious-ips/"),
]


# Which generator built the data set in place: a changed BUILD invalidates it.
DATASET = "bench_admin " + hashlib.sha256(repr(BUILD).encode()).hexdigest()[:12]


def _dataset_present() -> bool:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT count(*) FROM accounts_user WHERE username LIKE 'scale%'), "
            "(SELECT count(*) FROM audit_session), (SELECT count(*) FROM audit_event), "
            "obj_description('audit_event'::regclass, 'pg_class')"
        )
        return cursor.fetchone() == (USERS, SESSIONS, EVENTS, DATASET)


def _build() -> dict[str, float]:
    from django.db import connection

    from analytics import rollups, services

    timings = {}
    if _dataset_present():
        print("    the 1M users / 10M events data set is there already", flush=True)
    else:
        with connection.cursor() as cursor:
            # analytics_user_day (and its deltas) are emptied by audit_session's TRUNCATE
            # trigger: naming them here too fails ("being used by active queries").
            cursor.execute("TRUNCATE audit_session, audit_user_activity, audit_event")
            cursor.execute("DELETE FROM accounts_user WHERE username LIKE 'scale%'")
        for name, sql in BUILD:
            print(f"    building {name}", flush=True)
            started = time.perf_counter()
            with connection.cursor() as cursor:
                cursor.execute(sql)
            timings[f"insert {name}"] = time.perf_counter() - started
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
            cursor.execute(f"COMMENT ON TABLE audit_event IS '{DATASET}'")
    # The sync keeps analytics_user_day and analytics_user_stats (the INSERTs above filled them
    # through their triggers): their rebuild from scratch is the disaster-recovery cost, no
    # longer a periodic one.
    print("    rebuilding analytics_user_day and analytics_user_stats", flush=True)
    started = time.perf_counter()
    rollups.rebuild()
    timings["rebuild analytics_user_day + analytics_user_stats"] = time.perf_counter() - started
    print("    refreshing the rollups", flush=True)
    timings.update(
        {f"refresh {name}": s for name, s in services.analytics_refresh().seconds.items()}
    )
    with connection.cursor() as cursor:  # statistics for indexes a migration added since
        cursor.execute("ANALYZE")
        # The rebuild rewrote analytics_user_stats: its visibility map is empty until a vacuum,
        # which autovacuum would run on a server that has it on (the bench's has it off), and
        # index-only counts read every heap page meanwhile.
        cursor.execute("VACUUM analytics_user_stats")
    return timings


def _timed(fn) -> tuple[float, float]:
    fn()
    samples = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1]


def _views() -> list[list[str]]:
    from django.db import connection

    rows = []
    for name, sql in VIEW_QUERIES.items():

        def query(sql=sql):
            with connection.cursor() as cursor:
                cursor.execute(sql)
                cursor.fetchall()

        p50, p95 = _timed(query)
        rows.append([name, f"{p50:.1f}", f"{p95:.1f}"])
    return rows


class QueryCounter(list):
    """A database execute wrapper that notes every SQL statement a request runs."""

    def __call__(self, execute, sql, params, many, context):
        self.append(sql)
        return execute(sql, params, many, context)


def _pages() -> list[list[str]]:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client

    admin, _ = get_user_model().objects.get_or_create(
        username="bench-admin", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client(HTTP_HOST="127.0.0.1")  # an allowed host of the bench settings
    client.force_login(admin)
    some_user = get_user_model().objects.filter(username="scale1").values_list("pk", flat=True)[0]
    rows = []
    for name, url in PAGES:
        url = url.format(user=some_user)
        queries = QueryCounter()
        with connection.execute_wrapper(queries):
            response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
        p50, p95 = _timed(lambda url=url: client.get(url))
        rows.append([name, f"{p50:.0f}", f"{p95:.0f}", str(len(queries))])
    return rows


def _occurred_index() -> list[list[str]]:
    from django.db import connection

    query = """SELECT count(*), count(DISTINCT user_id) FROM audit_event
               WHERE occurred_at >= now() - interval '2 days'
                 AND occurred_at < now() - interval '1 day'"""
    rows = []
    for kind in ("brin", "btree"):
        with connection.cursor() as cursor:
            cursor.execute("DROP INDEX IF EXISTS bench_event_occurred")
            cursor.execute("DROP INDEX IF EXISTS audit_event_occurred")
            cursor.execute(
                f"CREATE INDEX bench_event_occurred ON audit_event USING {kind} (occurred_at)"
            )
            cursor.execute("ANALYZE audit_event")
            # audit_event is partitioned: the index is the sum of its partitions' indexes.
            cursor.execute(
                "SELECT pg_size_pretty(sum(pg_relation_size(relid)))"
                " FROM pg_partition_tree('bench_event_occurred')"
            )
            size = cursor.fetchone()[0]

        def run(cursor_query=query):
            with connection.cursor() as cursor:
                cursor.execute(cursor_query)
                cursor.fetchall()

        p50, p95 = _timed(run)
        rows.append([kind, size, f"{p50:.0f}", f"{p95:.0f}"])
    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX IF EXISTS bench_event_occurred")
        cursor.execute("CREATE INDEX audit_event_occurred ON audit_event (occurred_at, id)")
    return rows


def run(duration: float) -> str:
    common.redis_flush()
    timings = _build()
    view_rows = _views()
    page_rows = _pages()
    index_rows = _occurred_index()
    build = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in timings.items())
    return common.section(
        "Reports at 1M users and 10M events",
        sys.modules[__name__],
        f"Build and refresh times: {build}.",
        "",
        "### Analytics views (server time, ms)",
        "",
        common.md_table(["Query", "p50", "p95"], view_rows),
        "",
        "Target: < 50 ms p95.",
        "",
        "### Admin pages (server time through Django, ms; SQL queries per page)",
        "",
        common.md_table(["Page", "p50", "p95", "SQL queries"], page_rows),
        "",
        "Target: < 150 ms p95 each.",
        "",
        "### audit_event.occurred_at: BRIN or btree (a one-day count with distinct users, ms)",
        "",
        common.md_table(["Index", "size", "p50", "p95"], index_rows, align="lrrr"),
        "",
    )
