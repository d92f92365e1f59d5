"""Test run: real PostgreSQL and Redis, isolated from what `make run` uses.

PostgreSQL: pytest-django creates its own `test_<name>` database. Redis: a separate database
number (default 15) and its own key prefix, flushed by the tests alone.
"""

from urllib.parse import urlsplit, urlunsplit

from .base import *  # noqa: F403
from .base import (
    SESSIONHUB,
    celery_redis_url,
    celery_transport_options,
    env,
    redis_cache,
    simple_jwt_settings,
)


def _with_redis_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


DEBUG = False
SECRET_KEY = "test-secret-key-0123456789abcdef0123456789abcdef"
JWT_SIGNING_KEY = "test-jwt-signing-key-0123456789abcdef0123456789"
SIMPLE_JWT = simple_jwt_settings(JWT_SIGNING_KEY)

REDIS_URL = _with_redis_db(
    env.str("REDIS_URL", default="redis://127.0.0.1:6379/0"), env.int("TEST_REDIS_DB", default=15)
)
CACHES = redis_cache(REDIS_URL)
CELERY_BROKER_URL = celery_redis_url(REDIS_URL)
CELERY_RESULT_BACKEND = celery_redis_url(REDIS_URL)
CELERY_BROKER_TRANSPORT_OPTIONS = celery_transport_options(
    CELERY_BROKER_URL, visibility_timeout=3600
)
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = celery_transport_options(CELERY_RESULT_BACKEND)
CELERY_RESULT_BACKEND_ALWAYS_RETRY = CELERY_RESULT_BACKEND.startswith("sentinel://")
SESSIONHUB["REDIS_KEY_PREFIX"] = "shtest"

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]

# Static files straight from the apps (no collectstatic needed before the browser tests).
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
