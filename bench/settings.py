"""Settings of the benchmark's gunicorn and of the runner: the developer settings, isolated.

* PostgreSQL: the server of DATABASE_URL, but always the database ``sessionhub_bench`` (or
  ``$BENCH_DATABASE``, named ``sessionhub_bench…``; created and migrated by the runner), never
  the ones `make run` and `make test` use.
* Redis: the server of REDIS_URL, but database 12 (or ``$BENCH_REDIS_DB``, never the one of
  `make run` or `make test`) and the key prefix ``shbench``; the runner empties that database
  (FLUSHDB on it only) before each case.
* DEBUG off (no query log), quiet logging, a fast password hasher for the bench users.
* Database connections kept for the whole case (CONN_MAX_AGE None instead of 60 s): the runner
  accounts the CPU of each worker's PostgreSQL backend by its pid. One reconnect a minute would
  make no measurable difference to the figures.
"""

import warnings
from datetime import timedelta
from urllib.parse import urlsplit, urlunsplit

from sessionhub.settings.local import *  # noqa: F403
from sessionhub.settings.local import CACHES, DATABASES, SESSIONHUB, SIMPLE_JWT, env

# BENCH_DATABASE picks another bench database (e.g. to keep a data set of another branch):
# its name must still start with sessionhub_bench.
BENCH_DATABASE = env.str("BENCH_DATABASE", default="sessionhub_bench")
# BENCH_REDIS_DB lets two bench runs share one Redis server without emptying each other.
BENCH_REDIS_DB = env.int("BENCH_REDIS_DB", default=12)
BENCH_REDIS_PREFIX = "shbench"


def _with_redis_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "bench.urls"

DATABASES = {"default": {**DATABASES["default"], "NAME": BENCH_DATABASE, "CONN_MAX_AGE": None}}

REDIS_URL = _with_redis_db(env.str("REDIS_URL", default="redis://127.0.0.1:6379/0"), BENCH_REDIS_DB)
CACHES = {"default": {**CACHES["default"], "LOCATION": REDIS_URL}}
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = REDIS_URL
# No per-user session limit: bench_sizes opens its 100k sessions for one user.
SESSIONHUB = {**SESSIONHUB, "REDIS_KEY_PREFIX": BENCH_REDIS_PREFIX, "SESSION_LIMIT_PER_USER": 0}

# Tokens are issued just before each case; a long lifetime keeps a long run from outliving them.
SIMPLE_JWT = {**SIMPLE_JWT, "ACCESS_TOKEN_LIFETIME": timedelta(hours=2)}

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    # The runner's readiness probes get 401s by design.
    "loggers": {"django.request": {"level": "ERROR"}},
}
# No collectstatic for a benchmark: whitenoise's warning about the missing STATIC_ROOT is noise.
warnings.filterwarnings("ignore", message="No directory at", category=UserWarning)
