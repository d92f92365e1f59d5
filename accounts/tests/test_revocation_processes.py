"""An ended session is refused on the client's next request, whichever gunicorn worker serves
it: a warm worker (the ending call returns once every process has the end) and a worker forked
a moment ago (it loads the ended sessions before it serves anything)."""

import os
import signal
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from .helpers import sid_of

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ITERATIONS = 100
WORKERS = 4


def login(url: str, username: str, password: str) -> dict:
    response = requests.post(
        f"{url}/api/auth/token/", json={"username": username, "password": password}, timeout=30
    )
    assert response.status_code == 200, response.text
    return response.json()


def call(url: str, access: str) -> int:
    """One authenticated request on a connection of its own (any worker may accept it)."""
    return requests.get(
        f"{url}/api/sessions/", headers={"Authorization": f"Bearer {access}"}, timeout=30
    ).status_code


def worker_pids(master: int) -> set[int]:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return {int(pid) for pid in children}


def test_the_next_request_after_a_logout_or_revoke_is_refused_by_every_worker(
    gunicorn_server, user, password, capsys
):
    gunicorn_server.workers = WORKERS
    gunicorn_server.start()
    pool = ThreadPoolExecutor(WORKERS)
    url = gunicorn_server.url
    laptop = login(url, user.username, password)
    for _ in range(8):  # every worker has served a request: their listeners are up
        assert call(url, laptop["access"]) == 200
    served_after_end: Counter[str] = Counter()  # requests answered 2xx after the end
    end_seconds = []
    for n in range(ITERATIONS):
        phone = login(url, user.username, password)
        assert call(url, phone["access"]) == 200
        began = time.monotonic()
        if n % 2:
            how = "logout"
            ended = requests.post(
                f"{url}/api/auth/logout/", json={"refresh": phone["refresh"]}, timeout=30
            )
        else:
            how = "revoke"
            ended = requests.delete(
                f"{url}/api/sessions/{sid_of(phone['access'])}/",
                headers={"Authorization": f"Bearer {laptop['access']}"},
                timeout=30,
            )
        end_seconds.append(time.monotonic() - began)
        assert ended.status_code == 204, ended.text
        # Sent the instant the end answered, on one connection per worker: whichever worker
        # accepts one, it must refuse it.
        statuses = pool.map(call, [url] * WORKERS, [phone["access"]] * WORKERS)
        served_after_end.update({how: sum(status != 401 for status in statuses)})
    ms = sorted(seconds * 1000 for seconds in end_seconds)
    with capsys.disabled():
        print(
            f"\n[end, {WORKERS} workers] {ITERATIONS} ends: p50 {ms[ITERATIONS // 2]:.1f} ms,"
            f" p95 {ms[int(ITERATIONS * 0.95)]:.1f} ms, max {ms[-1]:.1f} ms; requests served"
            f" after the end: {sum(served_after_end.values())}"
        )
    pool.shutdown()
    assert served_after_end == Counter(), f"of {ITERATIONS} ended sessions"


def test_a_fresh_worker_refuses_an_ended_session_on_its_first_request(
    gunicorn_server, user, password
):
    gunicorn_server.start()
    url, master = gunicorn_server.url, gunicorn_server.process.pid
    tokens = login(url, user.username, password)
    assert call(url, tokens["access"]) == 200
    ended = requests.post(
        f"{url}/api/auth/logout/", json={"refresh": tokens["refresh"]}, timeout=30
    )
    assert ended.status_code == 204
    assert call(url, tokens["access"]) == 401
    first_requests = []
    for _ in range(3):
        old = worker_pids(master)
        os.kill(master, signal.SIGHUP)  # new workers are forked, the old ones stopped
        deadline = time.monotonic() + 30
        while True:
            current = worker_pids(master)
            if len(current) == gunicorn_server.workers and not current & old:
                break
            assert time.monotonic() < deadline, "gunicorn did not replace its workers"
            time.sleep(0.01)
        # Nothing else reached the new workers: these are their first requests.
        first_requests += [call(url, tokens["access"]) for _ in range(gunicorn_server.workers)]
    assert first_requests == [401] * len(first_requests)
