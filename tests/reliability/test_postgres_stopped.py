"""Fault: PostgreSQL stops for 30 s under load (`pg_ctl stop -m fast`, then started again).

A private cluster (initdb, pg_ctl; run as `postgres` under root) with the schema migrated into
it; gunicorn, the Celery worker and beat all use it. Tracked calls need no SQL — GET
/api/sessions/ reads Redis only — so they keep answering 2xx. What needs SQL while it is down:
logins, token refresh, logout and verification of refresh tokens (the user row and simplejwt's
token tables), GET /api/me/ (the user row), /healthz (503, failing: database) and the admin. The
sync task fails, retries with backoff (autoretry on OperationalError) and catches up once
PostgreSQL is back; Redis keeps everything meanwhile. Totals must be exact.

Measured here: ~4,200 calls served (all 2xx) during the 30 s; a login meanwhile answers 500;
about 30 sync attempts fail and are retried; the first sync completes 0.7 to 2.6 s after
PostgreSQL is back (sync every 3 s).
"""

import contextlib
import re
import time

import pytest
import requests
from celery.exceptions import TimeoutError as CeleryTimeout

from audit.tasks import sync_sessions

from .helpers import PASSWORD, TRACKED, Load, settle_and_assert_exact, wait_until

pytestmark = pytest.mark.slow

USERS = 10
SESSIONS = 40
OUTAGE_SECONDS = 30
SYNC = {"SYNC_INTERVAL": 3}
MAX_RETRIES = sync_sessions.max_retries

CREATE_USERS = """
from accounts.models import User
for n in range({users}):
    User.objects.create_user(username=f"load{{n}}", password="{password}")
"""


def test_postgres_stopped_for_30_seconds_under_load(postgres_server, postgres_stack, capsys):
    stack = postgres_stack
    stack.manage("migrate", "--noinput")
    stack.manage("shell", "-c", CREATE_USERS.format(users=USERS, password=PASSWORD))
    stack.start_web()
    worker = stack.start_worker("worker", **SYNC)
    stack.start_beat("beat", **SYNC)
    tokens = stack.login_many([f"load{n % USERS}" for n in range(SESSIONS)])
    assert [stack.login(f"nobody{n}", "wrong").status_code for n in range(2)] == [401, 401]

    load = Load(stack.web_url, TRACKED, tokens).start()
    try:
        time.sleep(3)
        runs = stack.stat("sync_runs:ok")
        wait_until(lambda: stack.stat("sync_runs:ok") > runs, 30, 0.05, "a completed sync")
        postgres_server.stop("fast")
        stopped = time.monotonic()
        at_stop = load.ok
        # A run of our own while it is down: it must fail, retry with backoff, then succeed.
        retried = stack.celery.send_task("audit.tasks.sync_sessions")
        down = {
            "healthz": requests.get(f"{stack.web_url}/healthz", timeout=10),
            "login": stack.login("load0"),
        }
        assert down["healthz"].status_code == 503
        assert down["healthz"].json()["failing"] == ["database"]
        assert down["login"].status_code >= 500  # needs the user row
        assert b"Traceback" not in down["login"].content
        time.sleep(max(OUTAGE_SECONDS - (time.monotonic() - stopped), 0))
        served_while_down = load.ok - at_stop
        assert load.server_errors() == 0 and load.ok == sum(load.statuses.values())
        errors_while_down = stack.stat("sync_runs:error")
        assert errors_while_down >= 1  # the sync did run into the outage

        postgres_server.start()
        back = time.time()
        # Caught up: a sync that started after PostgreSQL came back has completed.
        wait_until(
            lambda: float(stack.redis.hget("shtest:sync", "last_success") or 0) > back,
            60,
            0.1,
            "a sync after the restart",
        )
        catch_up = time.time() - back
        # Our run succeeds on its next try — which its jittered backoff may have set later.
        with contextlib.suppress(CeleryTimeout):
            retried.get(timeout=20, propagate=False)
        time.sleep(2)
    finally:
        load.stop()
    assert load.errors == [] and load.ok == sum(load.statuses.values()), load.summary()

    retries = re.findall(rf"\[{retried.id}\] retry: Retry in (\d+)s", worker.log())
    assert retries, worker.log()[-3000:]
    # Succeeded once PostgreSQL was back, or still waiting out its backoff; failed only if
    # the jittered backoff used up all of its retries within the outage.
    state = retried.state
    assert state in ("SUCCESS", "RETRY") or len(retries) == MAX_RETRIES, (state, retries)
    totals = settle_and_assert_exact(
        stack, postgres_server.url, calls=load.ok, logins=SESSIONS, failed_logins=2
    )
    with capsys.disabled():
        print(
            f"\n[postgresql stopped {OUTAGE_SECONDS} s] {load.ok} calls, {served_while_down} "
            f"served while it was down (all 2xx); login meanwhile: "
            f"{down['login'].status_code}; {errors_while_down} sync attempts failed and were "
            f"retried (our run: {state} after retries in {', '.join(retries)} s); first sync "
            f"completed {catch_up:.1f} s after the restart; PostgreSQL: {totals['calls']} calls, "
            f"{totals['events']} events (exact)"
        )
