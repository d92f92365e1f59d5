"""Fault: two `celery beat` processes (a deployment mistake the README warns about) plus the
worker, under load. Every sync is scheduled twice; the sync lock turns the second of two
overlapping runs into a skip, and the idempotent writes would make even a real overlap
harmless. The totals must be exact, both beats must have scheduled syncs, and none may fail.

Syncs run every second, 5 sessions per transaction, over 400 sessions under load.
"""

import time

import pytest

from .helpers import PASSWORD, TRACKED, Load, settle_and_assert_exact, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

USERS = 40
SESSIONS = 400
SYNC = {"SYNC_INTERVAL": 1, "SYNC_BATCH_SIZE": 5, "SYNC_COMMIT_ROWS": 5}


def test_two_beats_and_a_worker_under_load(stack, django_user_model, capsys):
    usernames = [f"load{n}" for n in range(USERS)]
    for name in usernames:
        django_user_model.objects.create_user(username=name, password=PASSWORD)
    stack.start_web()
    tokens = stack.login_many([usernames[n % USERS] for n in range(SESSIONS)])
    assert [stack.login(f"nobody{n}", "wrong").status_code for n in range(2)] == [401, 401]

    load = Load(stack.web_url, TRACKED, tokens).start()
    try:
        stack.start_worker("worker", concurrency=2, **SYNC)
        stack.start_beat("beat-a", **SYNC)
        stack.start_beat("beat-b", **SYNC)
        # Both beats scheduling, the worker running the syncs. Whether two runs overlap (and
        # the second is skipped by the lock) depends on the beats' phase against a sync's
        # 0.1 s, so it is reported, not required; the lock keeping a second run out is
        # tested in audit/tests/test_sync.py.
        wait_until(lambda: stack.stat("sync_runs:ok") >= 8, 40, 0.2, "runs completed")
        time.sleep(2)
    finally:
        load.stop()
        for process in stack.processes:
            if process.name.startswith("beat"):
                process.stop()
    assert load.errors == [] and load.ok == sum(load.statuses.values()), load.summary()

    totals = settle_and_assert_exact(
        stack, stack.database_url, calls=load.ok, logins=SESSIONS, failed_logins=2
    )
    ok, skipped = stack.stat("sync_runs:ok"), stack.stat("sync_runs:skipped")
    errors = stack.stat("sync_runs:error")
    assert errors == 0
    beats = [p for p in stack.processes if p.name.startswith("beat")]
    sent = [p.log().count("Sending due task audit-sync") for p in beats]
    assert len(sent) == 2 and min(sent) >= 2, sent  # both beats really scheduled the sync
    with capsys.disabled():
        print(
            f"\n[two beats] {load.ok} calls on {SESSIONS} sessions; sync runs: {ok} completed, "
            f"{skipped} skipped by the lock, {errors} failed (beats sent {sent}); "
            f"PostgreSQL: {totals['calls']} calls, {totals['events']} events (exact)"
        )
