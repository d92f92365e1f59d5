"""Business metrics, computed at scrape time from Redis.

Every web worker, every host and every Celery worker writes its figures to Redis (counters in
one hash, histogram buckets in others); whichever process answers a scrape reads them back in
one pipelined round trip. So every scrape tells the same truth, whatever worker serves it, and
figures born in Celery workers reach Prometheus without an exporter of their own.

Bounded by construction: no label carries a user, an IP or a session. Labels are enums
(status, failure reason, end reason, lock-out scope) or the names of our own Celery tasks.
"""

from collections.abc import Iterable

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector

from accounts.events import EndReason, FailureReason, LockScope
from accounts.livesessions import DURATION_BUCKETS, SessionStatus
from core import clock
from core.conf import get_settings
from core.redis import REDIS_UNAVAILABLE, get_redis
from core.rediskeys import keys

LOCKOUT_SCOPES = tuple(LockScope)
TASK_DURATION_BUCKETS = (0.05, 0.25, 1, 5, 30, 120)
TASK_STATES = ("succeeded", "failed", "retried")


def histogram_observe(pipe, key: str, value: float, buckets: Iterable[float]) -> None:
    """Queue one observation of a Redis-kept histogram (per-bucket counts, sum, count)."""
    bucket = "+Inf"
    for bound in buckets:
        if value <= bound:
            bucket = str(bound)
            break
    pipe.hincrby(key, bucket, 1)
    pipe.hincrby(key, "count", 1)
    pipe.hincrbyfloat(key, "sum", value)


def _add_histogram(family, label_values, raw: dict, buckets) -> None:
    """Add one labelled histogram read from a Redis hash (per-bucket counts) to a family."""
    raw = {k.decode(): v for k, v in raw.items()}
    cumulative, rows = 0, []
    for bound in buckets:
        cumulative += int(raw.get(str(bound), 0))
        rows.append((str(bound), cumulative))
    rows.append(("+Inf", int(raw.get("count", 0))))
    family.add_metric(list(label_values), rows, sum_value=float(raw.get("sum", 0)))


def _sum_hashes(hashes: list[dict]) -> dict:
    """Hashes of counters (one per shard) added up field by field; one hash as it is."""
    if len(hashes) == 1:
        return hashes[0]
    total: dict[bytes, float] = {}
    for values in hashes:
        for name, value in values.items():
            total[name] = total.get(name, 0) + float(value)
    return {name: int(value) if value == int(value) else value for name, value in total.items()}


def _stream_ms(stream_id: bytes) -> int:
    return int(stream_id.decode().split("-")[0])


def task_names() -> list[str]:
    """Our own Celery tasks: a bounded label set, known at import time."""
    # The project's Celery app (sessionhub.celery makes itself the current one when the
    # settings package loads); reached this way so this module never imports the wiring above.
    from celery import current_app as app

    app.loader.import_default_modules()
    ours = ("sessionhub.", "accounts.", "audit.", "analytics.")
    return sorted(name for name in app.tasks if name.startswith(ours))


class SessionhubCollector(Collector):
    def describe(self):
        return []  # collected fresh at every scrape, never at registration

    def collect(self):
        conf = get_settings()
        now = clock.now()
        up = GaugeMetricFamily("sessionhub_redis_up", "1 when the live-session store answered.")
        try:
            values = self._read(now, conf)
        except REDIS_UNAVAILABLE:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from self._families(values, now)

    def _read(self, now, conf) -> dict:
        """One pipeline: the figures kept per shard (core.rediskeys) summed at scrape time,
        then the ones kept once."""
        client = get_redis()
        pipe = client.pipeline(transaction=False)
        active_since, recent_since = now - conf.ACTIVE_WINDOW, now - conf.RECENT_WINDOW
        per_shard = 9
        for shard in keys.shards():
            pipe.zcount(keys.active_index(shard), active_since, "+inf")
            pipe.zcount(keys.active_index(shard), recent_since, f"({active_since}")
            pipe.zcount(keys.active_index(shard), "-inf", f"({recent_since}")
            pipe.hgetall(keys.stats(shard))
            pipe.hgetall(keys.duration_histogram(shard))
            pipe.scard(keys.dirty(shard))
            pipe.scard(keys.dirty_inflight(shard))
            pipe.xlen(keys.events(shard))
            pipe.xrange(keys.events(shard), count=1)
        pipe.hgetall(keys.sync_state())
        pipe.get(keys.celery_heartbeat())
        pipe.zcount(keys.lockouts(), now, "+inf")
        names = task_names()
        for name in names:
            pipe.hgetall(keys.task_histogram(name))
        results = pipe.execute()
        sharded = results[: per_shard * keys.shard_count]
        fixed = results[per_shard * keys.shard_count :]

        def column(i: int) -> list:
            return sharded[i::per_shard]

        oldest = [first for first in column(8) if first]
        return {
            "active": sum(column(0)),
            "recent": sum(column(1)),
            "inactive": sum(column(2)),
            "stats": {k.decode(): v for k, v in _sum_hashes(column(3)).items()},
            "duration": _sum_hashes(column(4)),
            "dirty": sum(column(5)) + sum(column(6)),
            "stream_length": sum(column(7)),
            # The oldest unsynced event of any shard.
            "oldest_event": min(oldest, key=lambda first: _stream_ms(first[0][0]), default=[]),
            "sync": {k.decode(): v for k, v in fixed[0].items()},
            "heartbeat": fixed[1],
            "lockouts_active": fixed[2],
            "tasks": dict(zip(names, fixed[3:], strict=True)),
        }

    def _families(self, v: dict, now: float):
        stats = v["stats"]

        def stat(name: str) -> float:
            return float(stats.get(name, 0))

        window = get_settings().ACTIVE_WINDOW
        gauge = GaugeMetricFamily(
            "sessions_active_total",
            f"Sessions with API activity in the last {window} seconds (SESSION_ACTIVE_WINDOW).",
        )
        gauge.add_metric([], v["active"])
        yield gauge
        # The alerts about active sessions say how long "active" is from this, not from a
        # number written into their text.
        active_window = GaugeMetricFamily(
            "sessions_active_window_seconds",
            "How recent an API call makes a session active now (SESSION_ACTIVE_WINDOW).",
        )
        active_window.add_metric([], window)
        yield active_window

        by_status = GaugeMetricFamily(
            "sessions_by_status",
            "Live sessions by status of their last activity: active_now, recent, inactive.",
            labels=["status"],
        )
        for status in SessionStatus:
            # _read names the active count "active": it is sessions_active_total too.
            by_status.add_metric(
                [status.value], v["active" if status is SessionStatus.ACTIVE_NOW else status.value]
            )
        yield by_status

        calls = CounterMetricFamily("api_calls", "Tracked API calls (authenticated requests).")
        calls.add_metric([], stat("api_calls"))
        yield calls

        duration = HistogramMetricFamily(
            "session_duration_seconds",
            "Duration of ended sessions, first to last activity, observed once per session.",
        )
        _add_histogram(duration, [], v["duration"], DURATION_BUCKETS)
        yield duration

        failures = CounterMetricFamily(
            "login_failures", "Failed login attempts by reason.", labels=["reason"]
        )
        for reason in FailureReason:
            failures.add_metric([reason.value], stat(f"login_failures:{reason.value}"))
        yield failures

        lockouts = CounterMetricFamily("lockouts", "Lock-outs started, by scope.", labels=["scope"])
        for scope in LOCKOUT_SCOPES:
            lockouts.add_metric([scope], stat(f"lockouts:{scope}"))
        yield lockouts

        active_locks = GaugeMetricFamily("lockouts_active", "Lock-outs in force now.")
        active_locks.add_metric([], v["lockouts_active"])
        yield active_locks

        started = CounterMetricFamily("sessions_started", "Sessions opened (logins).")
        started.add_metric([], stat("sessions_started"))
        yield started

        ended = CounterMetricFamily(
            "sessions_ended", "Sessions ended, by reason.", labels=["reason"]
        )
        for end_reason in EndReason:
            ended.add_metric([end_reason.value], stat(f"sessions_ended:{end_reason.value}"))
        yield ended

        errors = CounterMetricFamily(
            "tracking_errors", "Tracking operations that found Redis unavailable."
        )
        errors.add_metric([], stat("tracking_errors"))
        yield errors

        dropped = CounterMetricFamily(
            "tracking_dropped", "Calls or events dropped because an outage outlasted the buffers."
        )
        dropped.add_metric([], stat("tracking_dropped") + stat("events_dropped"))
        yield dropped

        anomalies = CounterMetricFamily(
            "session_anomalies",
            "Sessions found in use from two clients at once (other network and user agent).",
        )
        anomalies.add_metric([], stat("session_anomalies"))
        yield anomalies

        yield from self._sync_families(v, now, stat)
        yield from self._celery_families(v, stat)

    def _sync_families(self, v: dict, now: float, stat):
        sync = v["sync"]
        backlog = GaugeMetricFamily(
            "sync_backlog", "Items waiting for the audit sync, by kind.", labels=["kind"]
        )
        backlog.add_metric(["sessions"], v["dirty"])
        backlog.add_metric(["events"], v["stream_length"])
        yield backlog

        lag = GaugeMetricFamily(
            "sync_lag_seconds", "Age of the oldest event not yet in PostgreSQL (0 when none)."
        )
        oldest = v["oldest_event"]
        if oldest:
            stream_id = oldest[0][0].decode()
            lag.add_metric([], max(0.0, now - int(stream_id.split("-")[0]) / 1000))
        else:
            lag.add_metric([], 0.0)
        yield lag

        last = GaugeMetricFamily(
            "sync_last_success_timestamp_seconds",
            "When the audit sync last committed (with shards: the shard synced longest ago).",
        )
        # With shards, the oldest: one shard that stopped syncing must age the figure (and
        # fire the sync-age alert) although the others keep committing.
        fields = [f"last_success:{shard}" for shard in keys.shards()] if keys.sharded else []
        last.add_metric([], min(float(sync.get(f, 0)) for f in fields or ["last_success"]))
        yield last

        # Counted in PostgreSQL by each sync run (and each retry or discard), read here from
        # Redis with the rest: a scrape makes no database query.
        quarantined = GaugeMetricFamily(
            "sync_quarantined_rows",
            "Rows the audit sync set aside because they cannot be written, by kind.",
            labels=["kind"],
        )
        for kind in ("sessions", "events"):
            quarantined.add_metric([kind], float(sync.get(f"quarantined:{kind}", 0)))
        yield quarantined

        runs = CounterMetricFamily("sync_runs", "Audit sync runs by result.", labels=["result"])
        for result in ("ok", "error", "skipped"):
            runs.add_metric([result], stat(f"sync_runs:{result}"))
        yield runs

        for kind in ("sessions", "events"):
            moved = CounterMetricFamily(f"sync_{kind}", f"{kind.capitalize()} written by the sync.")
            moved.add_metric([], stat(f"sync_{kind}"))
            yield moved

    def _celery_families(self, v: dict, stat):
        heartbeat = GaugeMetricFamily(
            "celery_heartbeat_timestamp_seconds", "Last beat-scheduled heartbeat a worker ran."
        )
        heartbeat.add_metric([], float(v["heartbeat"] or 0))
        yield heartbeat

        tasks = CounterMetricFamily(
            "celery_tasks", "Celery tasks finished, by task and state.", labels=["task", "state"]
        )
        for name in v["tasks"]:
            for state in TASK_STATES:
                tasks.add_metric([name, state], stat(f"celery_tasks:{name}:{state}"))
        yield tasks

        duration = HistogramMetricFamily(
            "celery_task_duration_seconds", "Run time of Celery tasks.", labels=["task"]
        )
        for name, raw in v["tasks"].items():
            _add_histogram(duration, [name], raw, TASK_DURATION_BUCKETS)
        yield duration
