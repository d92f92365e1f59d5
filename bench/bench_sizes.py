"""How much room the state takes: Redis bytes per live session and per queued event, and
PostgreSQL bytes per stored session and event (table plus indexes).

Sessions are opened with the real login script (`accounts.livesessions.start`) and given one
flush of calls; events are the login events those sessions append; then everything is synced
to PostgreSQL with the real sync. Redis figures are `used_memory` deltas divided by the count.
"""

import sys
import time

from . import common

COUNT = 100_000


def run(duration: float) -> str:
    from django.contrib.auth import get_user_model
    from django.db import connection

    from accounts import livesessions
    from accounts.events import login_payload
    from accounts.tracking import tracker
    from audit import services
    from core.rediskeys import keys

    count = COUNT if duration >= 30 else 20_000
    common.redis_flush()
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE audit_session, audit_user_activity, audit_event, audit_sync_cursor"
        )
    user, _ = get_user_model().objects.get_or_create(username="bench-sizes")
    client = common.redis_client()

    def used() -> int:
        return int(client.info("memory")["used_memory"])

    base = used()
    now = time.time()
    print(f"    opening {count:,} sessions", flush=True)
    sids = []
    for n in range(count):
        sid = livesessions.new_sid()
        sids.append(sid)
        livesessions.start(
            sid=sid,
            user_id=user.pk,
            started_at=now - n % 3600,
            ip=f"198.51.{n % 250}.{n % 200}",
            user_agent="Mozilla/5.0 (X11) bench",
            username=user.username,
        )
    for sid in sids:
        tracker.authorize(
            sid=sid,
            user_id=user.pk,
            started_at=now,
            ip="198.51.100.1",
            user_agent="Mozilla/5.0 (X11) bench",
        )
    tracker.flush()
    with_everything = used()
    events = client.xlen(keys.events())
    client.delete(keys.events())
    without_events = used()
    per_event = (with_everything - without_events) / events
    per_session = (without_events - base) / count

    # Put the events back the way they were made, then sync everything.
    for sid in sids:
        client.xadd(
            keys.events(),
            {
                "d": login_payload(
                    user_id=user.pk,
                    username=user.username,
                    ip="198.51.100.1",
                    user_agent="Mozilla/5.0 (X11) bench",
                    sid=sid,
                )
            },
        )
    services.sync_run()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_total_relation_size('audit_session') / greatest(count(*), 1) "
            "FROM audit_session"
        )
        pg_session = cursor.fetchone()[0]
        cursor.execute(
            "SELECT pg_total_relation_size('audit_event') / greatest(count(*), 1) FROM audit_event"
        )
        pg_event = cursor.fetchone()[0]
    common.redis_flush()
    rows = [
        ["Redis, per live session (hash, 3 index entries, user set)", f"{per_session:,.0f}"],
        ["Redis, per queued event (stream entry)", f"{per_event:,.0f}"],
        ["PostgreSQL, per session (audit_session with indexes)", f"{pg_session:,}"],
        ["PostgreSQL, per event (audit_event with indexes)", f"{pg_event:,}"],
    ]
    return common.section(
        "Sizes",
        sys.modules[__name__],
        common.md_table(["What", "bytes"], rows),
        "",
        f"Measured with {count:,} sessions and as many login events. So 1M live sessions take "
        f"about {per_session * 1e6 / 2**20:,.0f} MiB of Redis, and a backlog of 1M events "
        f"about {per_event * 1e6 / 2**20:,.0f} MiB.",
        "",
    )
