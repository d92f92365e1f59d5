"""gunicorn for the benchmarks: the project's configuration and hooks, minus the access log.

The hooks matter: `worker_exit` flushes the tracker's pending counts on a graceful stop, which
the "nothing lost" check relies on. The runner passes the address in BENCH_BIND and its own
PROMETHEUS_MULTIPROC_DIR (under bench/results/), so `on_starting` never wipes the one of a
`make run` in progress.
"""

import os

from sessionhub.gunicorn import *  # noqa: F403

bind = os.environ["BENCH_BIND"]
workers = 2
worker_class = "sync"
accesslog = None
errorlog = os.environ.get("BENCH_ERROR_LOG", "-")
loglevel = "warning"
