"""/metrics scrape time and body size as live sessions and users grow, beside the seed's design.

* `sessionhub` — the app's /metrics (Django test client, loopback): django-prometheus plus the
  business collector, whose gauges are ZCOUNTs on the activity index and whose counters come
  from one Redis hash, read in one pipelined round trip at scrape time. N live sessions are
  put in the indexes the way logins and the tracker leave them.
* `per-user labels` — the original design's `api_calls_total{user_id="…"}`: a prometheus_client
  counter with one child per user, exposed by `generate_latest`.

Each scrape is timed 30 times (5 times for the per-user design at 1M users, where one takes
seconds) after one warm-up; the table gives the median and p95 (there: the second slowest of 5).
"""

import statistics
import sys
import time

from . import common

SCRAPES = 30


def _fill_sessions(count: int) -> None:
    from core.rediskeys import keys

    client = common.redis_client()
    now = time.time()
    chunk = 50_000
    for start in range(0, count, chunk):
        members = {
            f"bench{n:08d}": now - (n % 7200) for n in range(start, min(count, start + chunk))
        }
        pipe = client.pipeline(transaction=False)
        pipe.zadd(keys.active_index(), members)
        pipe.zadd(keys.started_index(), members)
        pipe.execute()
    client.hset(keys.stats(), mapping={"api_calls": count * 40, "sessions_started": count})


def _time(fn, scrapes: int = SCRAPES) -> tuple[float, float, int]:
    fn()
    samples, size = [], 0
    for _ in range(scrapes):
        started = time.perf_counter()
        size = fn()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1], size


def _ours(sessions: int) -> tuple[float, float, int]:
    from django.test import Client

    common.redis_flush()
    _fill_sessions(sessions)
    client = Client(HTTP_HOST="127.0.0.1")  # an allowed host of the bench settings

    def scrape() -> int:
        response = client.get("/metrics", REMOTE_ADDR="127.0.0.1")
        assert response.status_code == 200
        return len(response.content)

    return _time(scrape)


def _per_user(users: int) -> tuple[float, float, int]:
    from prometheus_client import CollectorRegistry, Counter, generate_latest

    registry = CollectorRegistry()
    counter = Counter("api_calls", "API calls per user", ["user_id"], registry=registry)
    for user in range(users):
        counter.labels(user_id=str(user)).inc(40)
    # One exposition of a million children takes seconds: fewer samples there.
    return _time(lambda: len(generate_latest(registry)), SCRAPES if users < 1_000_000 else 5)


def run(duration: float) -> str:
    sizes = (1_000, 100_000, 1_000_000) if duration >= 30 else (1_000, 100_000)
    designs = [
        ("sessionhub", "live sessions", _ours),
        ("per-user labels", "users", _per_user),
    ]
    rows = []
    for design, unit, measure in designs:
        for size in sizes:
            print(f"    {design} with {size:,} {unit}", flush=True)
            p50, p95, body = measure(size)
            rows.append(
                [design, f"{size:,} {unit}", f"{p50:.1f}", f"{p95:.1f}", f"{body / 1024:,.1f}"]
            )
    common.redis_flush()
    table = common.md_table(
        ["Design", "Size", "scrape p50 (ms)", "scrape p95 (ms)", "body (KiB)"],
        rows,
        align="llrrr",
    )
    return common.section(
        "/metrics scrape cost",
        sys.modules[__name__],
        table,
        "",
        "Target for sessionhub: < 20 ms and < 100 KB per scrape, flat across sizes.",
        "",
    )
