"""What the session life cycle's defences cost: atomic refresh rotation, the per-user session
limit, ends recorded in PostgreSQL, the deactivation and deletion triggers, the reconciliation.

* refresh — `accounts.services.token_refresh` in-process, sequentially (no HTTP): median and
  p95 latency and SQL statements per refresh (the blacklist claim, the recorded-ends check);
* login at the limit — `livesessions.start` for a user under its limit, and for one at it
  (each login ends the oldest session in the same script);
* recorded ends — `session_ends_apply` over N pending per-user ends, one live session each;
* triggers — deactivating then deleting N users by one statement each, with the triggers on
  and disabled (the rows they write are then rolled back);
* reconciliation — one `sessions_reconcile` run over the live sessions (all users active: the
  whole walk, nothing to end).
"""

import statistics
import sys
import time

from . import common

PASSWORD = "bench-password"  # noqa: S105 - throwaway accounts in the bench database only


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def run(duration: float) -> str:
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext, override_settings

    from accounts import livesessions, services
    from accounts.events import EndReason
    from accounts.models import SessionEndRequest
    from accounts.tracking import tracker
    from core.rediskeys import keys

    quick = duration < 30
    users_n = 2_000 if quick else 10_000
    sessions_per_user = 10
    refreshes = 200 if quick else 1_000
    User = get_user_model()
    common.redis_flush()
    tracker.reset()
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE accounts_session_end_request")
    User.objects.filter(username__startswith="lifecycle-").delete()
    SessionEndRequest.objects.all().delete()
    rows = []
    unusable = make_password(None)

    # --- refresh -----------------------------------------------------------------------------
    user = User.objects.create_user(username="lifecycle-refresh", password=PASSWORD)
    pair = services.login(username=user.username, password=PASSWORD, ip="", user_agent="")
    times, queries = [], []
    for _ in range(refreshes):
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            pair = services.token_refresh(raw_refresh=pair.refresh, ip="", user_agent="")
            times.append(time.perf_counter() - started)
        queries.append(len(captured))
    times.sort()
    rows.append(
        [
            f"refresh ({refreshes} in a row)",
            f"p50 {_ms(statistics.median(times))} ms, p95 {_ms(times[int(len(times) * 0.95)])} ms",
            f"{statistics.median(queries):.0f} SQL statements",
        ]
    )

    # --- login under and at the limit --------------------------------------------------------
    def open_sessions(user_id: int, count: int) -> list[float]:
        spent = []
        for _ in range(count):
            sid = livesessions.new_sid()
            started = time.perf_counter()
            livesessions.start(
                sid=sid, user_id=user_id, started_at=time.time(), ip="", user_agent="", username=""
            )
            spent.append(time.perf_counter() - started)
        return spent

    limit = 50  # the default (the bench settings switch the limit off for bench_sizes)
    with override_settings(SESSIONHUB={**settings.SESSIONHUB, "SESSION_LIMIT_PER_USER": limit}):
        under = open_sessions(900_001, limit - 1)
        open_sessions(900_002, limit)
        at = open_sessions(900_002, 500)  # each ends the oldest
    rows.append(
        [
            f"login script, limit {limit}",
            f"under it p50 {_ms(statistics.median(under))} ms, "
            f"at it (ends one) p50 {_ms(statistics.median(at))} ms",
            "",
        ]
    )

    # --- users and their live sessions -------------------------------------------------------
    common.redis_flush()
    User.objects.bulk_create(
        [User(username=f"lifecycle-{n}", password=unusable) for n in range(users_n)],
        batch_size=5000,
    )
    ids = list(
        User.objects.filter(username__startswith="lifecycle-")
        .exclude(username="lifecycle-refresh")
        .values_list("pk", flat=True)
    )
    client = common.redis_client()
    now = time.time()
    for chunk in range(0, len(ids) * sessions_per_user, 1000):
        pipe = client.pipeline(transaction=False)
        for n in range(chunk, min(chunk + 1000, len(ids) * sessions_per_user)):
            script_keys, args = livesessions.start_args(
                sid=livesessions.new_sid(),
                user_id=ids[n % len(ids)],
                started_at=now,
                ip="198.51.100.1",
                user_agent="bench",
                username="",
            )
            livesessions.script("session_start")(keys=script_keys, args=args, client=pipe)
        pipe.execute()
    live = client.zcard(keys.started_index())

    started = time.perf_counter()
    assert services.sessions_reconcile() == 0
    reconcile = time.perf_counter() - started
    rows.append(
        [
            f"reconciliation, {live:,} live sessions of {len(ids):,} users",
            f"{reconcile:.2f} s per run ({reconcile / live * 1e6:.1f} µs per session)",
            f"{-(-live // 1000)} batches of 1,000",
        ]
    )

    # --- triggers ----------------------------------------------------------------------------
    def timed(sql: str, *, triggers: bool) -> float:
        with transaction.atomic(), connection.cursor() as cursor:
            if not triggers:
                cursor.execute("ALTER TABLE accounts_user DISABLE TRIGGER USER")
            started = time.perf_counter()
            cursor.execute(sql)
            spent = time.perf_counter() - started
            transaction.set_rollback(True)
        return spent

    deactivate = "UPDATE accounts_user SET is_active = false WHERE username LIKE 'lifecycle-%'"
    delete = (
        "DELETE FROM token_blacklist_blacklistedtoken; "
        "DELETE FROM token_blacklist_outstandingtoken; "
        "DELETE FROM accounts_user WHERE username LIKE 'lifecycle-%'"
    )
    for label, sql in (("deactivate", deactivate), ("delete", delete)):
        off = min(timed(sql, triggers=False) for _ in range(3))
        on = min(timed(sql, triggers=True) for _ in range(3))
        rows.append(
            [
                f"{label} {len(ids):,} users in one statement",
                f"{on * 1000:.0f} ms with the trigger, {off * 1000:.0f} ms without",
                f"+{(on - off) / len(ids) * 1e6:.1f} µs per user",
            ]
        )

    # --- recorded ends -----------------------------------------------------------------------
    SessionEndRequest.objects.bulk_create(
        [
            SessionEndRequest(
                user_id=user_id,
                reason=EndReason.REVOKED,
                requested_at=services._wall_datetime(livesessions.now_ms()),
            )
            for user_id in ids
        ],
        batch_size=5000,
    )
    started = time.perf_counter()
    ended = 0
    while SessionEndRequest.objects.filter(applied_at__isnull=True).exists():
        ended += services.session_ends_apply()
    applied = time.perf_counter() - started
    rows.append(
        [
            f"recorded ends: {len(ids):,} pending, one per user",
            f"{applied:.2f} s to apply ({ended:,} sessions ended, "
            f"{ended / applied:,.0f} sessions/s)",
            "",
        ]
    )

    User.objects.filter(username__startswith="lifecycle-").delete()
    SessionEndRequest.objects.all().delete()
    common.redis_flush()
    tracker.reset()
    return common.section(
        "Session life cycle",
        sys.modules[__name__],
        common.md_table(["case", "measured", ""], rows, "lll"),
    )
