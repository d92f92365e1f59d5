"""Settings shared by every environment.

Every value that differs between machines comes from the environment (see `.env.example`).
Secrets have no default here: `local` and `test` supply throwaway ones, `production` demands
real ones and refuses to start without them.
"""

from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()

DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])

# Reverse proxies whose X-Forwarded-For we believe: a count of hops ("1", believed only from a
# loopback or private REMOTE_ADDR) or a list of addresses/CIDRs ("10.0.0.0/8,172.16.0.0/12").
# Empty: REMOTE_ADDR is the client. See accounts/clientip.py.
TRUSTED_PROXIES = env.str("TRUSTED_PROXIES", default="")

INSTALLED_APPS = [
    "django_prometheus",
    "reports.admin_apps.SessionhubAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "django.contrib.humanize",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "accounts",
    "audit",
    "analytics",
    "reports",
    "observability",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "core.admin_session.AdminSessionTimeoutMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "observability.http_metrics.BoundedPrometheusAfterMiddleware",
]
# Latency buckets of django-prometheus' histograms (its default has 17, up to 75 s): enough to
# read p50/p95 from 10 ms to 10 s; gunicorn ends a request at 30 s anyway.
PROMETHEUS_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, float("inf"))

ROOT_URLCONF = "sessionhub.urls"
WSGI_APPLICATION = "sessionhub.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": env.db_url(
        "DATABASE_URL",
        default="postgres://postgres@127.0.0.1:5432/sessionhub",
        engine="django_prometheus.db.backends.postgresql",
    )
}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# Fail fast when PostgreSQL is away instead of hanging a worker for the OS default.
DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = 3

# A streaming replica for the reports (core/replica.py): the admin's report pages and
# analytics reads go there, everything that writes or reads its own writes stays on the
# primary. Unset: one database, as without the router.
DATABASE_REPLICA_URL = env.str("DATABASE_REPLICA_URL", default="")
if DATABASE_REPLICA_URL:
    DATABASES["replica"] = env.db_url_config(
        DATABASE_REPLICA_URL, engine="django_prometheus.db.backends.postgresql"
    )
    DATABASES["replica"].update(
        CONN_MAX_AGE=DATABASES["default"]["CONN_MAX_AGE"],
        CONN_HEALTH_CHECKS=True,
        # Tests run against one test database: the replica alias is a view of it.
        TEST={"MIRROR": "default"},
    )
    DATABASES["replica"].setdefault("OPTIONS", {})["connect_timeout"] = 3
DATABASE_ROUTERS = ["core.replica.ReplicaRouter"]

REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")


def _sentinel_addresses(value: list[str], name: str = "REDIS_SENTINELS") -> list[tuple[str, int]]:
    addresses = []
    for item in value:
        host, _, port = item.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ImproperlyConfigured(f"{name}: {item!r} is not host:port")
        addresses.append((host.strip("[]"), int(port)))
    return addresses


# Redis Sentinel (a primary, replicas, automatic fail-over): the app, the cache and Celery ask
# the sentinels for the current primary and follow a fail-over without a restart. REDIS_URL
# then gives only the database number and the password; its host:port is not used. Both
# variables or neither: half a Sentinel configuration is an error, not a silent single Redis.
REDIS_SENTINELS = _sentinel_addresses(env.list("REDIS_SENTINELS", default=[]))
REDIS_SENTINEL_MASTER = env.str("REDIS_SENTINEL_MASTER", default="")
# The sentinels' own password (`requirepass` in sentinel.conf), when they have one.
REDIS_SENTINEL_PASSWORD = env.str("REDIS_SENTINEL_PASSWORD", default="")
if bool(REDIS_SENTINELS) != bool(REDIS_SENTINEL_MASTER):
    raise ImproperlyConfigured(
        "REDIS_SENTINELS and REDIS_SENTINEL_MASTER go together: set both (Sentinel) or neither."
    )
if REDIS_SENTINEL_PASSWORD and not REDIS_SENTINELS:
    raise ImproperlyConfigured("REDIS_SENTINEL_PASSWORD is set but REDIS_SENTINELS is not.")

# Redis Cluster: seed nodes (host:port, …) of the cluster that holds the live sessions, the
# tracking flush, the event streams, throttling and the revocation channel (core.redis gives
# redis-py's RedisCluster), spread over SESSIONHUB["REDIS_SHARDS"] virtual shards
# (core.rediskeys). REDIS_URL keeps naming a plain Redis: the Django cache's, and Celery's
# unless CELERY_BROKER_URL says otherwise (kombu cannot use a cluster: a plain Redis, a
# Sentinel group or RabbitMQ). Not with Sentinel: a cluster fails over by itself.
REDIS_CLUSTER_NODES = _sentinel_addresses(
    env.list("REDIS_CLUSTER_NODES", default=[]), "REDIS_CLUSTER_NODES"
)
# The cluster nodes' password (`requirepass`/`masterauth`), when they have one.
REDIS_CLUSTER_PASSWORD = env.str("REDIS_CLUSTER_PASSWORD", default="")
if REDIS_CLUSTER_NODES and REDIS_SENTINELS:
    raise ImproperlyConfigured(
        "REDIS_CLUSTER_NODES and REDIS_SENTINELS exclude each other: a Redis Cluster fails over "
        "by itself; set one of them."
    )


def _sentinel_kwargs() -> dict:
    return {
        "password": REDIS_SENTINEL_PASSWORD or None,
        "socket_connect_timeout": 0.5,
        "socket_timeout": 0.5,
    }


def redis_cache(redis_url: str) -> dict:
    """The Django cache on the app's Redis: REDIS_URL itself, or the Sentinel group's primary."""
    options = {
        "CLIENT_CLASS": "django_redis.client.DefaultClient",
        "SOCKET_CONNECT_TIMEOUT": 1,
        "SOCKET_TIMEOUT": 1,
        # The cache is an accelerator; a Redis outage must not turn into 500s.
        "IGNORE_EXCEPTIONS": True,
    }
    location = redis_url
    if REDIS_SENTINELS:
        parts = urlsplit(redis_url)
        credentials = parts.netloc.rpartition("@")[0]
        netloc = f"{credentials}@{REDIS_SENTINEL_MASTER}" if credentials else REDIS_SENTINEL_MASTER
        location = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
        options.update(
            CLIENT_CLASS="django_redis.client.SentinelClient",
            CONNECTION_FACTORY="django_redis.pool.SentinelConnectionFactory",
            SENTINELS=REDIS_SENTINELS,
            SENTINEL_KWARGS=_sentinel_kwargs(),
        )
    return {
        "default": {
            "BACKEND": "django_prometheus.cache.backends.redis.RedisCache",
            "LOCATION": location,
            "KEY_PREFIX": "cache",
            "OPTIONS": options,
        }
    }


def celery_redis_url(redis_url: str) -> str:
    """Celery's URL for the app's Redis: itself, or kombu's `sentinel://` list for the group
    (the master's name goes in the transport options, see celery_transport_options)."""
    if not REDIS_SENTINELS:
        return redis_url
    parts = urlsplit(redis_url)
    credentials = parts.netloc.rpartition("@")[0]
    prefix = f"{credentials}@" if credentials else ""
    return ";".join(
        f"sentinel://{prefix}{host}:{port}{parts.path}" for host, port in REDIS_SENTINELS
    )


def celery_transport_options(url: str, **options) -> dict:
    if url.startswith("sentinel://"):
        options.update(master_name=REDIS_SENTINEL_MASTER, sentinel_kwargs=_sentinel_kwargs())
    return options


CACHES = redis_cache(REDIS_URL)
DJANGO_REDIS_LOG_IGNORED_EXCEPTIONS = True

AUTH_USER_MODEL = "accounts.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
FORMAT_MODULE_PATH = ["sessionhub.formats"]  # ISO dates in the admin's reports
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["accounts.authentication.SessionJWTAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["core.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "core.api.exception_handler",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "sessionhub API",
    "DESCRIPTION": "Live sessions, power users, idle users and security anomalies of a JWT API.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "COMPONENT_SPLIT_REQUEST": True,
    # One named enum for a session's status wherever the API shows it.
    "ENUM_NAME_OVERRIDES": {"SessionStatusEnum": "accounts.livesessions.SessionStatus.choices"},
    # Swagger UI served from our own static files: no CDN, works offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}


def simple_jwt_settings(signing_key: str) -> dict:
    """simplejwt configuration; the signing key is separate from SECRET_KEY on purpose."""
    return {
        "ACCESS_TOKEN_LIFETIME": timedelta(seconds=env.int("JWT_ACCESS_LIFETIME", default=300)),
        "REFRESH_TOKEN_LIFETIME": timedelta(
            seconds=env.int("JWT_REFRESH_LIFETIME", default=12 * 3600)
        ),
        "ROTATE_REFRESH_TOKENS": True,
        "BLACKLIST_AFTER_ROTATION": True,
        "UPDATE_LAST_LOGIN": False,
        # One algorithm, pinned: tokens claiming any other (including "none") are refused.
        "ALGORITHM": "HS256",
        "SIGNING_KEY": signing_key,
        "VERIFYING_KEY": "",
        "AUTH_HEADER_TYPES": ("Bearer",),
        "USER_ID_CLAIM": "user_id",
        "USER_ID_FIELD": "id",
        "LEEWAY": 0,
    }


# The product's own knobs, validated by core.conf (unknown keys are an error).
SESSIONHUB = {
    "REDIS_KEY_PREFIX": env.str("SESSIONHUB_REDIS_PREFIX", default="sh"),
    # Virtual shards of the live sessions (core.rediskeys): 1 on a single Redis (keys as they
    # always were), 16 by default on a Redis Cluster. Fixed for a deployment's life: a user's
    # sessions live in shard user id % REDIS_SHARDS.
    "REDIS_SHARDS": env.int("REDIS_SHARDS", default=16 if REDIS_CLUSTER_NODES else 1),
    "IDLE_TIMEOUT": env.int("SESSION_IDLE_TIMEOUT", default=30 * 60),
    "ABSOLUTE_TIMEOUT": env.int("SESSION_ABSOLUTE_TIMEOUT", default=12 * 3600),
    "ACTIVE_WINDOW": env.int("SESSION_ACTIVE_WINDOW", default=5 * 60),
    "RECENT_WINDOW": env.int("SESSION_RECENT_WINDOW", default=3600),
    "IDLE_USER_DAYS": env.int("IDLE_USER_DAYS", default=7),
    "TRACKING_FLUSH_INTERVAL": env.float("TRACKING_FLUSH_INTERVAL", default=0.1),
    "ENDED_RELOAD_SECONDS": env.float("ENDED_RELOAD_SECONDS", default=30.0),
    "ENDED_SESSION_KEEP_SECONDS": env.int("ENDED_SESSION_KEEP_SECONDS", default=24 * 3600),
    "SESSION_LIMIT_PER_USER": env.int("SESSION_LIMIT_PER_USER", default=50),
    "SESSION_LIST_PAGE_SIZE": env.int("SESSION_LIST_PAGE_SIZE", default=20),
    "EVENT_STREAM_MAXLEN": env.int("EVENT_STREAM_MAXLEN", default=1_000_000),
    "LOGIN_FAILURE_LIMIT": env.int("LOGIN_FAILURE_LIMIT", default=5),
    "LOGIN_IP_USERNAME_LIMIT": env.int("LOGIN_IP_USERNAME_LIMIT", default=20),
    "LOGIN_LOCKOUT_BASE_SECONDS": env.int("LOGIN_LOCKOUT_BASE_SECONDS", default=60),
    "LOGIN_LOCKOUT_MAX_SECONDS": env.int("LOGIN_LOCKOUT_MAX_SECONDS", default=3600),
    "LOGIN_FAILURE_WINDOW_SECONDS": env.int("LOGIN_FAILURE_WINDOW_SECONDS", default=3600),
    # Per account, from anywhere: past this many password checks in the window, addresses the
    # account has not logged in from get one turn per delay (see accounts/throttling.py).
    "LOGIN_ACCOUNT_FAILURE_LIMIT": env.int("LOGIN_ACCOUNT_FAILURE_LIMIT", default=20),
    "LOGIN_ACCOUNT_DELAY_SECONDS": env.int("LOGIN_ACCOUNT_DELAY_SECONDS", default=60),
    "LOGIN_KNOWN_ADDRESS_DAYS": env.int("LOGIN_KNOWN_ADDRESS_DAYS", default=30),
    # The security report lists an address once it failed this many logins in the window, or
    # tried this many usernames: one person's typos stay below both (5 lock the pair).
    "SUSPICIOUS_IP_MIN_FAILURES": env.int("SUSPICIOUS_IP_MIN_FAILURES", default=10),
    "SUSPICIOUS_IP_MIN_USERNAMES": env.int("SUSPICIOUS_IP_MIN_USERNAMES", default=5),
    # Seconds between the beat jobs' runs (CELERY_BEAT_SCHEDULE below reads them here).
    "SYNC_INTERVAL": env.float("SYNC_INTERVAL", default=10.0),
    "SESSION_END_APPLY_INTERVAL": env.float("SESSION_END_APPLY_INTERVAL", default=5.0),
    "SESSION_RECONCILE_INTERVAL": env.float("SESSION_RECONCILE_INTERVAL", default=300.0),
    "SESSION_EXPIRE_INTERVAL": env.float("SESSION_EXPIRE_INTERVAL", default=30.0),
    "ANALYTICS_REFRESH_INTERVAL": env.float("ANALYTICS_REFRESH_INTERVAL", default=60.0),
    "CELERY_HEARTBEAT_INTERVAL": env.float("CELERY_HEARTBEAT_INTERVAL", default=30.0),
    "SYNC_BATCH_SIZE": env.int("SYNC_BATCH_SIZE", default=2000),
    "SYNC_COMMIT_ROWS": env.int("SYNC_COMMIT_ROWS", default=20_000),
    "AUDIT_RETENTION_DAYS": env.int("AUDIT_RETENTION_DAYS", default=90),
    "AUDIT_IP_ANONYMIZE": env.bool("AUDIT_IP_ANONYMIZE", default=False),
    "METRICS_TOKEN": env.str("METRICS_TOKEN", default=""),
    "METRICS_ALLOWED_IPS": env.str("METRICS_ALLOWED_IPS", default=""),
    "REVOCATION_ACK_TIMEOUT": env.float("REVOCATION_ACK_TIMEOUT", default=1.0),
    "ANOMALY_ACTION": env.str("SESSION_ANOMALY_ACTION", default="record"),
    "ANOMALY_WINDOW": env.int("SESSION_ANOMALY_WINDOW", default=300),
    # The admin's cookie session (core.admin_session), ASVS 3.3.2 level 2 by default.
    "ADMIN_SESSION_IDLE_TIMEOUT": env.int("ADMIN_SESSION_IDLE_TIMEOUT", default=30 * 60),
    "ADMIN_SESSION_ABSOLUTE_TIMEOUT": env.int("ADMIN_SESSION_ABSOLUTE_TIMEOUT", default=12 * 3600),
}
# The browser and the session table forget an admin session by its absolute bound at the
# latest (Django's default is two weeks).
SESSION_COOKIE_AGE = SESSIONHUB["ADMIN_SESSION_ABSOLUTE_TIMEOUT"]

# Celery: broker and results on Redis, JSON only, every task bounded in time.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=celery_redis_url(REDIS_URL))
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default=celery_redis_url(REDIS_URL))
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_RESULT_EXPIRES = 3600
CELERY_TASK_SOFT_TIME_LIMIT = 240
CELERY_TASK_TIME_LIMIT = 300
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = celery_transport_options(
    CELERY_BROKER_URL, visibility_timeout=3600
)
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = celery_transport_options(CELERY_RESULT_BACKEND)
# Over Sentinel, a result stored while the primary fails over is retried until the new one
# answers (Celery's default drops it, and whoever waits for it waits in vain) — 12 times at
# most (Celery's default is without end), with a jittered back-off of at most 10 s between
# them: a worker is never blocked for good on a result it cannot store; the task's work is done
# either way, only its report is lost.
CELERY_RESULT_BACKEND_ALWAYS_RETRY = CELERY_RESULT_BACKEND.startswith("sentinel://")
CELERY_RESULT_BACKEND_MAX_RETRIES = 12
CELERY_WORKER_SEND_TASK_EVENTS = True
CELERY_TASK_SEND_SENT_EVENT = True
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE = {
    "audit-sync": {
        "task": "audit.tasks.sync_sessions",
        "schedule": SESSIONHUB["SYNC_INTERVAL"],
        # A run that could not start within one interval is superseded by the next one.
        "options": {"expires": SESSIONHUB["SYNC_INTERVAL"]},
    },
    "analytics-refresh": {
        "task": "analytics.tasks.refresh_analytics",
        "schedule": SESSIONHUB["ANALYTICS_REFRESH_INTERVAL"],
        "options": {"expires": 60},
    },
    "audit-prune": {
        "task": "audit.tasks.prune_audit",
        "schedule": 24 * 3600,
        "options": {"expires": 3600},
    },
    # audit_event's monthly partitions, two months ahead (the default partition catches any
    # row whose month has none, so a missed run never fails an insert).
    "audit-partitions": {
        "task": "audit.tasks.audit_partitions_ensure",
        "schedule": 6 * 3600,
        "options": {"expires": 3600},
    },
    "tokens-flush": {
        "task": "audit.tasks.flush_expired_tokens",
        "schedule": 6 * 3600,
        "options": {"expires": 3600},
    },
    # Ends recorded in PostgreSQL (password change, deactivation, deletion, an admin's "end
    # sessions", a reused refresh token) reach Redis here when they could not at once.
    "session-ends-apply": {
        "task": "accounts.tasks.session_ends_apply",
        "schedule": SESSIONHUB["SESSION_END_APPLY_INTERVAL"],
        "options": {"expires": SESSIONHUB["SESSION_END_APPLY_INTERVAL"]},
    },
    "sessions-reconcile": {
        "task": "accounts.tasks.sessions_reconcile",
        "schedule": SESSIONHUB["SESSION_RECONCILE_INTERVAL"],
        "options": {"expires": 300},
    },
    "sessions-expire": {
        "task": "accounts.tasks.sessions_expire",
        "schedule": SESSIONHUB["SESSION_EXPIRE_INTERVAL"],
        "options": {"expires": 30},
    },
    "lockout-periods-close": {
        "task": "accounts.tasks.lockout_periods_close",
        "schedule": 30.0,
        "options": {"expires": 30},
    },
    "celery-heartbeat": {
        "task": "sessionhub.tasks.heartbeat",
        "schedule": SESSIONHUB["CELERY_HEARTBEAT_INTERVAL"],
        "options": {"expires": 30},
    },
}
# Nobody reads the results of beat's runs (their effects are in PostgreSQL and Redis, their
# counts in the metrics): not stored, and beat does not subscribe to a result channel per task
# sent — a subscription that, when the Redis primary fails over, beat would try to restore
# before sending the next task.
for _entry in CELERY_BEAT_SCHEDULE.values():
    _entry["options"]["ignore_result"] = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
    },
}
