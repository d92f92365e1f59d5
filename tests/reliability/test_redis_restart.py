"""Fault: Redis restarts under load.

With an append-only file (`appendonly yes`, `appendfsync everysec`, as in docker compose) and a
graceful stop (SIGTERM: Redis writes and syncs the file before exiting), nothing may be lost:
the web workers keep answering on the signature-verified JWT (GET /api/me/ needs PostgreSQL,
not Redis), hold their counts and events in memory, and flush them once Redis is back; logins
made meanwhile open their sessions then. Totals must be exact.

Without persistence a restart empties Redis: that is the one case where loss is expected
(README, "What can be lost"). The second test measures it and prints the figure rather than
asserting one (only that nothing is counted twice). Measured here (2 web workers, 3 load
threads on 30 sessions, sync every 2 s, Redis stopped 1 s after a sync and down 3 s, 5 s of
load after): about a third of all calls lost — 498 of 1,384 and 545 of 1,547 in two runs.
Only ~140 of them are the calls made between the last sync and the stop; the rest were made
AFTER the restart: the sessions live on (their JWTs are valid), a flush rebuilds each one in
Redis counting from zero, and the sync only moves counts forward (GREATEST), so a session's
new calls stay hidden until its new count passes the one PostgreSQL already has. That is
more than the README's "at most one sync interval of counts". The failed-login events still
in the stream at the stop are lost too (2 of 2).
"""

import time

import pytest
import requests

from .helpers import (
    PASSWORD,
    TRACKED_SQL,
    Load,
    audit_totals,
    settle_and_assert_exact,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

USERS = 10
SESSIONS = 30
OUTAGE_SECONDS = 5
SYNC = {"SYNC_INTERVAL": 2}
AOF = ("--appendonly", "yes", "--appendfsync", "everysec")
NO_PERSISTENCE = ("--appendonly", "no")


def start(stack, django_user_model) -> list[str]:
    usernames = [f"load{n}" for n in range(USERS)]
    for name in usernames:
        django_user_model.objects.create_user(username=name, password=PASSWORD)
    stack.start_web()
    stack.start_worker("worker", **SYNC)
    stack.start_beat("beat", **SYNC)
    return usernames


def just_after_a_sync(stack) -> None:
    runs = stack.stat("sync_runs:ok")
    wait_until(lambda: stack.stat("sync_runs:ok") > runs, 30, 0.02, "a completed sync")


def test_redis_restart_with_aof_loses_nothing(redis_server, redis_stack, django_user_model, capsys):
    stack = redis_stack
    redis_server.start(*AOF)
    usernames = start(stack, django_user_model)
    tokens = stack.login_many([usernames[n % USERS] for n in range(SESSIONS)])
    logins, failed_logins = SESSIONS, 0

    load = Load(stack.web_url, TRACKED_SQL, tokens).start()
    try:
        time.sleep(2)
        # Stopped between two syncs: a run cut off half-way would leave its lock behind in the
        # file, and the next runs would be skipped until it expires (correct, only slower).
        just_after_a_sync(stack)
        redis_server.stop()
        down_at = load.ok
        # Redis away: every call still answers 2xx, logins work, failures are recorded later.
        during = [stack.login(usernames[n]) for n in range(2)]
        assert [r.status_code for r in during] == [200, 200], [r.text for r in during]
        logins += 2
        load.add_tokens([r.json()["access"] for r in during])
        assert [stack.login(f"nobody{n}", "wrong").status_code for n in range(2)] == [401, 401]
        failed_logins += 2
        health = requests.get(f"{stack.web_url}/healthz", timeout=10)
        assert health.status_code == 503 and health.json()["failing"] == ["redis"]
        time.sleep(OUTAGE_SECONDS)
        served_while_down = load.ok - down_at
        assert load.server_errors() == 0, load.summary()

        calls_before_restart = load.ok
        redis_server.start()
        back = time.monotonic()
        # The held-back counts arrive while the workers run (not only at their exit).
        wait_until(
            lambda: stack.stat("api_calls") >= calls_before_restart, 15, 0.05, "held-back counts"
        )
        flushed_after = time.monotonic() - back
        time.sleep(3)
    finally:
        load.stop()
    assert load.errors == [] and load.ok == sum(load.statuses.values()), load.summary()

    totals = settle_and_assert_exact(
        stack, stack.database_url, calls=load.ok, logins=logins, failed_logins=failed_logins
    )
    with capsys.disabled():
        print(
            f"\n[redis restart, AOF everysec] {load.ok} calls, {served_while_down} served while "
            f"Redis was down ({OUTAGE_SECONDS} s), held-back counts in Redis "
            f"{flushed_after:.2f} s after its restart; PostgreSQL: {totals['calls']} calls, "
            f"{totals['events']} events (exact)"
        )


def test_redis_restart_without_persistence_loss_is_measured(
    redis_server, redis_stack, django_user_model, capsys
):
    stack = redis_stack
    redis_server.start(*NO_PERSISTENCE)
    usernames = start(stack, django_user_model)
    tokens = stack.login_many([usernames[n % USERS] for n in range(SESSIONS)])

    load = Load(stack.web_url, TRACKED_SQL, tokens).start()
    try:
        time.sleep(3)
        just_after_a_sync(stack)
        # Two failed logins after the last sync: their events are only in Redis's stream.
        assert [stack.login(f"nobody{n}", "wrong").status_code for n in range(2)] == [401, 401]
        time.sleep(1)  # half a sync interval
        synced_before = audit_totals(stack.database_url)["calls"]
        redis_server.stop()
        calls_at_stop = load.ok
        time.sleep(3)
        redis_server.start()
        time.sleep(5)
    finally:
        load.stop()
    assert load.errors == [] and load.server_errors() == 0, load.summary()
    assert load.ok == sum(load.statuses.values()), load.summary()
    time.sleep(1)  # the last flushes
    stack.sync_until_done()
    totals = audit_totals(stack.database_url)
    lost = load.ok - totals["calls"]
    # Loss, yes — but only of what Redis alone held: the calls counted after the last sync and
    # before the stop. Calls after the restart go to rebuilt sessions, a new generation that
    # PostgreSQL adds to what it had. Counting a call twice or storing an event twice, never.
    unsynced = calls_at_stop - synced_before
    # A call in flight at the stop may have reached Redis's counts before it and its answer the
    # load after `calls_at_stop` was read: at most one per load thread (each waits for its
    # answer), and as many as there are threads when the web workers serve them all at once.
    assert 0 <= lost <= unsynced + load.threads
    assert totals["hour_calls"] == totals["calls"]
    assert totals["events"] == totals["distinct_stream_ids"]
    assert totals["by_type"].get("login") == SESSIONS
    lost_events = 2 - totals["by_type"].get("login_failed", 0)
    with capsys.disabled():
        print(
            f"\n[redis restart, NO persistence] {load.ok} calls made, {totals['calls']} in "
            f"PostgreSQL: {lost} lost ({lost / load.ok:.1%}), of {unsynced} made after the last "
            f"sync and before the stop (the rest of those were still in the web processes and "
            f"flushed after the restart); failed-login events lost: {lost_events} of 2"
        )
