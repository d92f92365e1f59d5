"""The product's settings as one typed, validated object.

`settings.SESSIONHUB` is a dict so that each environment can override a value; this module
turns it into a frozen dataclass and refuses unknown keys, so a typo fails at start-up instead
of silently falling back to a default.
"""

from dataclasses import dataclass, fields
from functools import cache
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

# What to do with a session used from two distant fingerprints at once (accounts.tracking).
ANOMALY_ACTIONS = ("record", "end")


@dataclass(frozen=True, slots=True)
class SessionhubSettings:
    REDIS_KEY_PREFIX: str
    REDIS_SHARDS: int
    IDLE_TIMEOUT: int
    ABSOLUTE_TIMEOUT: int
    ACTIVE_WINDOW: int
    RECENT_WINDOW: int
    IDLE_USER_DAYS: int
    TRACKING_FLUSH_INTERVAL: float
    ENDED_RELOAD_SECONDS: float
    ENDED_SESSION_KEEP_SECONDS: int
    SESSION_LIMIT_PER_USER: int
    SESSION_LIST_PAGE_SIZE: int
    EVENT_STREAM_MAXLEN: int
    LOGIN_FAILURE_LIMIT: int
    LOGIN_IP_USERNAME_LIMIT: int
    LOGIN_LOCKOUT_BASE_SECONDS: int
    LOGIN_LOCKOUT_MAX_SECONDS: int
    LOGIN_FAILURE_WINDOW_SECONDS: int
    LOGIN_ACCOUNT_FAILURE_LIMIT: int
    LOGIN_ACCOUNT_DELAY_SECONDS: int
    LOGIN_KNOWN_ADDRESS_DAYS: int
    SUSPICIOUS_IP_MIN_FAILURES: int
    SUSPICIOUS_IP_MIN_USERNAMES: int
    SYNC_INTERVAL: float
    SESSION_END_APPLY_INTERVAL: float
    SESSION_RECONCILE_INTERVAL: float
    SESSION_EXPIRE_INTERVAL: float
    ANALYTICS_REFRESH_INTERVAL: float
    CELERY_HEARTBEAT_INTERVAL: float
    SYNC_BATCH_SIZE: int
    SYNC_COMMIT_ROWS: int
    AUDIT_RETENTION_DAYS: int
    AUDIT_IP_ANONYMIZE: bool
    METRICS_TOKEN: str
    METRICS_ALLOWED_IPS: str
    REVOCATION_ACK_TIMEOUT: float
    ANOMALY_ACTION: str
    ANOMALY_WINDOW: int
    ADMIN_SESSION_IDLE_TIMEOUT: int
    ADMIN_SESSION_ABSOLUTE_TIMEOUT: int


def _build(raw: dict) -> SessionhubSettings:
    known = {f.name: f for f in fields(SessionhubSettings)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ImproperlyConfigured(f"Unknown SESSIONHUB setting(s): {', '.join(unknown)}")
    missing = sorted(set(known) - set(raw))
    if missing:
        raise ImproperlyConfigured(f"Missing SESSIONHUB setting(s): {', '.join(missing)}")
    values: dict[str, Any] = {}
    for name, field in known.items():
        value = raw[name]
        expected = field.type
        assert isinstance(expected, type)  # the fields above are plain classes, not strings
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, expected):
            raise ImproperlyConfigured(
                f"SESSIONHUB[{name!r}] must be {expected.__name__}, got {value!r}"
            )
        values[name] = value
    conf = SessionhubSettings(**values)
    if conf.ACTIVE_WINDOW >= conf.RECENT_WINDOW:
        raise ImproperlyConfigured("SESSIONHUB ACTIVE_WINDOW must be shorter than RECENT_WINDOW.")
    if not 1 <= conf.REDIS_SHARDS <= 1024:
        raise ImproperlyConfigured("SESSIONHUB REDIS_SHARDS must be from 1 to 1024.")
    if conf.SESSION_LIMIT_PER_USER < 0:
        raise ImproperlyConfigured(
            "SESSIONHUB SESSION_LIMIT_PER_USER must be 0 (no limit) or more."
        )
    if not 1 <= conf.SESSION_LIST_PAGE_SIZE <= 1000:
        raise ImproperlyConfigured("SESSIONHUB SESSION_LIST_PAGE_SIZE must be from 1 to 1000.")
    if conf.IDLE_TIMEOUT > conf.ABSOLUTE_TIMEOUT:
        raise ImproperlyConfigured("SESSIONHUB IDLE_TIMEOUT must not exceed ABSOLUTE_TIMEOUT.")
    if conf.ANOMALY_ACTION not in ANOMALY_ACTIONS:
        raise ImproperlyConfigured(
            f"SESSION_ANOMALY_ACTION must be one of {', '.join(ANOMALY_ACTIONS)}, "
            f"got {conf.ANOMALY_ACTION!r}"
        )
    if conf.REVOCATION_ACK_TIMEOUT <= 0 or conf.ANOMALY_WINDOW <= 0:
        raise ImproperlyConfigured(
            "REVOCATION_ACK_TIMEOUT and SESSION_ANOMALY_WINDOW must be positive."
        )
    if conf.SUSPICIOUS_IP_MIN_FAILURES < 1 or conf.SUSPICIOUS_IP_MIN_USERNAMES < 1:
        raise ImproperlyConfigured(
            "SUSPICIOUS_IP_MIN_FAILURES and SUSPICIOUS_IP_MIN_USERNAMES must be at least 1."
        )
    if not 0 < conf.ADMIN_SESSION_IDLE_TIMEOUT <= conf.ADMIN_SESSION_ABSOLUTE_TIMEOUT:
        raise ImproperlyConfigured(
            "ADMIN_SESSION_IDLE_TIMEOUT must be positive and not exceed "
            "ADMIN_SESSION_ABSOLUTE_TIMEOUT."
        )
    return conf


@cache
def get_settings() -> SessionhubSettings:
    return _build(settings.SESSIONHUB)


def _reset(*, setting: str, **kwargs: object) -> None:
    if setting == "SESSIONHUB":
        get_settings.cache_clear()


setting_changed.connect(_reset)
