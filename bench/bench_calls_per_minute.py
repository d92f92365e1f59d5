"""Each user's API calls per minute, kept in Redis by the tracking flush: memory and cost.

Users are opened with the real login script and called through the tracker on a simulated
clock, one flush per simulated minute, so the rings are exactly what production writes. Memory
is `MEMORY USAGE` of each user's key (mean) and the `used_memory` delta per user, after 1 and
after 60 active minutes (the ring's bound). The flush cost compares the real flush script with
the same script without its per-minute block (stripped between its two marker comments), on
the same batches of 1,000 sessions of 1,000 users, interleaved: the round-trip time of one
EVALSHA, median of the repetitions.
"""

import statistics
import sys
import time

from . import common

BATCH = 1000


def _authorize_all(tracker, sessions) -> None:
    for user_id, sid, started in sessions:
        tracker.authorize(
            sid=sid, user_id=user_id, started_at=started, ip="198.51.100.1", user_agent="bench"
        )


def run(duration: float) -> str:
    from accounts import livesessions
    from accounts.tracking import tracker
    from core import clock
    from core.rediskeys import keys

    users = 10_000 if duration >= 30 else 2_000
    repetitions = 200 if duration >= 30 else 40
    common.redis_flush()
    client = common.redis_client()

    def used() -> int:
        return int(client.info("memory")["used_memory"])

    start = (time.time() // 60) * 60 - 3600
    sessions = []
    with clock.simulated(start) as simulated:
        for user_id in range(1, users + 1):
            sid = livesessions.new_sid()
            livesessions.start(
                sid=sid,
                user_id=user_id,
                started_at=start,
                ip="198.51.100.1",
                user_agent="bench",
                username=f"bench{user_id}",
            )
            sessions.append((user_id, sid, start))
        tracker.flush()
        base = used()
        rows = []
        for minute in range(60):
            simulated.value = start + minute * 60 + 1
            _authorize_all(tracker, sessions)
            tracker.flush()
            if minute in (0, 59):
                sample = [keys.user_calls_per_minute(u) for u, _, _ in sessions[:1000]]
                mean = statistics.mean(client.memory_usage(k, samples=0) for k in sample)
                delta = (used() - base) / users
                rows.append([f"{minute + 1}", f"{mean:,.0f}", f"{delta:,.0f}"])
                print(f"    {minute + 1} min: {mean:,.0f} B/key, {delta:,.0f} B/user", flush=True)

    source = livesessions.script_source("track_flush")
    begin = source.index("    -- calls per minute: begin")
    end = source.index("    -- calls per minute: end")
    stripped = source[:begin] + source[end:]
    scripts = {"with the ring": client.register_script(source)}
    scripts["without it"] = client.register_script(stripped)
    batch = sessions[:BATCH]
    flush_keys = [
        keys.active_index(),
        keys.started_index(),
        keys.dirty(),
        keys.stats(),
        keys.events(),
        keys.flush_sequence("bench-calls-per-minute"),
    ]
    timings = {name: [] for name in scripts}
    sequence = 0
    minute = int(start + 3600)
    for _ in range(repetitions):
        for name, script in scripts.items():
            sequence += 1
            args = [
                keys.session_prefix(),
                keys.user_sessions_prefix(),
                sequence,
                60,
                1000,
                len(batch),
                0,
                0,
                300,
                "{}",
                keys.user_calls_per_minute_prefix(),
                60,
                3660,
            ]
            for user_id, sid, started in batch:
                args += [sid, user_id, repr(started), "198.51.100.1", "bench", minute, 3]
                args += [repr(minute + 30.0), ""]
            began = time.perf_counter()
            script(keys=flush_keys, args=args)
            timings[name].append(time.perf_counter() - began)
    medians = {name: statistics.median(values) * 1000 for name, values in timings.items()}
    common.redis_flush()
    extra = medians["with the ring"] - medians["without it"]
    return common.section(
        "Calls per minute per user (Redis)",
        sys.modules[__name__],
        common.md_table(
            ["active minutes", "MEMORY USAGE, bytes/key", "used_memory, bytes/user"], rows
        ),
        "",
        f"Measured with {users:,} users, one call each per minute. 10,000 users active all "
        f"hour take about {float(rows[-1][2].replace(',', '')) * 10_000 / 2**20:,.1f} MiB.",
        "",
        common.md_table(
            ["flush of 1,000 sessions (EVALSHA round trip)", "median ms"],
            [[name, f"{value:.2f}"] for name, value in medians.items()],
        ),
        "",
        f"The ring adds {extra:.2f} ms per 1,000 sessions flushed "
        f"({extra / medians['without it']:.0%}), {repetitions} repetitions each.",
        "",
    )
