"""gunicorn configuration shared by `make run` and the container."""

import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
timeout = 30
graceful_timeout = 20
accesslog = "-"
# No client IPs or tokens in the access log: method, path, status, size and time only.
access_log_format = '"%(r)s" %(s)s %(b)s %(M)sms'


def worker_exit(server, worker):
    """Flush the worker's pending session counts before it goes (graceful stop, max_requests)."""
    from accounts.tracking import tracker

    tracker.shutdown()
