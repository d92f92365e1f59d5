"""Slow clients do not stall the app: three uploads trickling a byte a second, /healthz answers.

Replayed against the real gunicorn of `make run` and the container (sessionhub/gunicorn.py):
each slow client sends its headers with a Content-Length, then its body one byte a second, to
the login endpoint (which reads the body). With one request per process (gunicorn's sync
worker) three of them held both workers until gunicorn killed them at 30 s, and every other
request — /healthz included — waited.
"""

import socket
import threading
import time
import urllib.request

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SLOW_CLIENTS = 3
BODY = b'{"username": "someone", "password": "' + b"x" * 200 + b'"}'


class SlowUpload:
    """A client that announces a body and sends it a byte a second."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.sendall(
            b"POST /api/auth/token/ HTTP/1.1\r\n"
            b"Host: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\n"
            b"Content-Length: " + str(len(BODY)).encode() + b"\r\n\r\n"
        )
        self.sent = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._trickle, daemon=True)
        self.thread.start()

    def _trickle(self) -> None:
        while not self.stop.wait(1.0) and self.sent < len(BODY):
            try:
                self.sock.sendall(BODY[self.sent : self.sent + 1])
            except OSError:
                return
            self.sent += 1

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.sock.close()


def healthz_seconds(url: str) -> float:
    started = time.monotonic()
    with urllib.request.urlopen(f"{url}/healthz", timeout=10) as response:  # noqa: S310
        assert response.status == 200
    return time.monotonic() - started


def test_healthz_answers_while_slow_uploads_hang(gunicorn_server):
    gunicorn_server.start()
    healthz_seconds(gunicorn_server.url)  # warm: each worker's first request imports more
    slow = [SlowUpload(gunicorn_server.port) for _ in range(SLOW_CLIENTS)]
    try:
        time.sleep(2)  # the uploads have reached the workers and are being read
        timings = [healthz_seconds(gunicorn_server.url) for _ in range(10)]
        assert all(upload.sent < len(BODY) for upload in slow)  # still hanging
    finally:
        for upload in slow:
            upload.close()
    # The slowest of ten: a stalled server answers in 10 s or never, a free one in milliseconds.
    assert max(timings) < 1.0, timings
