"""gunicorn configuration shared by `make run` and the container.

Worker model: WEB_CONCURRENCY processes (default 2) of GUNICORN_THREADS threads (default 4),
gunicorn's gthread worker. A slow client occupies one thread; a reverse proxy that buffers
request bodies (nginx does by default) keeps them away from gunicorn altogether.

Metrics under several workers: django-prometheus' counters live in each worker, so they run in
prometheus_client's multiprocess mode — every worker writes its figures to files in
PROMETHEUS_MULTIPROC_DIR and any worker answering /metrics merges them. The directory is wiped
when the master starts (stale files from an earlier run would be summed in forever), and a
dead worker's live gauges are dropped. No `max_requests`: each recycled worker would leave
files behind, and scrape time grows with their number.
"""

import os
import shutil
from pathlib import Path

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Threads, so that a client sending its body a byte a second holds one thread, not a whole
# process: with the sync worker three such clients took both workers and nothing else was
# served. The worker's heartbeat comes from its main loop, so `timeout` no longer kills a
# worker for one slow request either. Each thread keeps its own PostgreSQL connection
# (workers x threads of them); the tracker and prometheus_client are thread-safe.
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
timeout = 30
graceful_timeout = 20
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-") or None
# No client IPs or tokens in the access log: method, path, status, size and time only.
access_log_format = '"%(r)s" %(s)s %(b)s %(M)sms'

MULTIPROC_DIR = os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR",
    str(Path(__file__).resolve().parent.parent / ".local" / "prometheus-multiproc"),
)


def on_starting(server):
    shutil.rmtree(MULTIPROC_DIR, ignore_errors=True)
    os.makedirs(MULTIPROC_DIR, exist_ok=True)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker):
    """Load the recently ended sessions before the worker serves anything.

    Here rather than in post_fork: the app (Django) is loaded by now. Bounded: with Redis
    down the worker starts at once and serves on the signature-verified JWT; with Redis slow
    it asks Redis per session until its set is loaded (accounts.tracking).
    """
    from accounts.tracking import tracker

    if not tracker.start():
        worker.log.warning("ended sessions not loaded at start: redis did not answer in time")


def worker_exit(server, worker):
    """Flush the worker's pending session counts before it goes (graceful stop)."""
    from accounts.tracking import tracker

    tracker.shutdown()
