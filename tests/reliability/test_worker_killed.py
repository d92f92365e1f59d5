"""Fault: the Celery worker is killed (`kill -9`) in the middle of a sync, under load.

The sync is made long on purpose — 600 sessions, one PostgreSQL transaction per 5 of them
(SYNC_BATCH_SIZE / SYNC_COMMIT_ROWS) — and the worker, pool and all, gets SIGKILL as soon as
the first commit shows in PostgreSQL. A new worker finishes the crashed run's in-flight set
and what changed meanwhile; the totals must be exact.

The killed run leaves its lock in Redis (nobody released it): runs are skipped until it
expires, SYNC_LOCK_SECONDS (120 s) after the last renewal. The test checks that a run is
indeed skipped, then shortens the dead lock's remaining life instead of sleeping two minutes.
The killed task's message (acks_late, never acknowledged) would only be delivered again after
the broker's visibility timeout (an hour): the next scheduled run does the work, and here the
test sends that run itself.
"""

import time

import psycopg
import pytest

from audit.services import SYNC_LOCK_SECONDS

from .helpers import PASSWORD, SYNC_TASK, TRACKED, Load, settle_and_assert_exact

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

USERS = 60
SESSIONS = 600
SLOW_SYNC = {"SYNC_BATCH_SIZE": 5, "SYNC_COMMIT_ROWS": 5}


def synced_sessions(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM audit_session").fetchone()[0]


def test_worker_killed_mid_sync_then_a_new_worker_finishes(stack, django_user_model, capsys):
    usernames = [f"load{n}" for n in range(USERS)]
    for name in usernames:
        django_user_model.objects.create_user(username=name, password=PASSWORD)
    stack.start_web()
    first = stack.start_worker("worker-1", concurrency=1, **SLOW_SYNC)
    tokens = stack.login_many([usernames[n % USERS] for n in range(SESSIONS)])
    failed = [stack.login(f"nobody{n}", "wrong").status_code for n in range(2)]
    assert failed == [401, 401]

    load = Load(stack.web_url, TRACKED, tokens).start()
    try:
        time.sleep(2)
        stack.celery.send_task(SYNC_TASK)
        started = time.monotonic()
        while synced_sessions(stack.database_url) == 0:
            assert time.monotonic() - started < 60, stack.logs()
            time.sleep(0.01)
        first.kill9()
        at_kill = synced_sessions(stack.database_url)
        # Mid-way: some sessions committed, the claimed set still in flight, the lock held.
        assert 0 < at_kill < SESSIONS
        assert stack.redis.scard("shtest:dirty:inflight") > 0
        lock_ttl = stack.redis.pttl("shtest:lock:sync")
        assert 0 < lock_ttl <= SYNC_LOCK_SECONDS * 1000

        time.sleep(1)
        stack.start_worker("worker-2", concurrency=1, **SLOW_SYNC)
        assert stack.sync()["skipped"]  # the dead run's lock still stands
        stack.redis.pexpire("shtest:lock:sync", 1)  # as if its 120 s had passed
        time.sleep(0.05)
        resumed = stack.sync()  # under load: the in-flight set first, then the new changes
        assert not resumed["skipped"] and resumed["sessions"] >= SESSIONS - at_kill
        assert not stack.redis.exists("shtest:dirty:inflight")
        time.sleep(1)
    finally:
        load.stop()
    assert load.errors == [] and load.ok == sum(load.statuses.values()), load.summary()

    totals = settle_and_assert_exact(
        stack, stack.database_url, calls=load.ok, logins=SESSIONS, failed_logins=2
    )
    with capsys.disabled():
        print(
            f"\n[worker kill -9] {load.ok} calls on {SESSIONS} sessions; killed with "
            f"{at_kill}/{SESSIONS} sessions committed; after a new worker: "
            f"{totals['calls']} calls and {totals['events']} events in PostgreSQL (exact)"
        )
