"""Security and session events: one small function per event type, all to the Redis stream.

Events go to a bounded Redis stream, never straight to PostgreSQL: a login flood must not
become a database flood. The audit sync moves them to PostgreSQL in bulk. Nothing here ever
carries a password or a raw token.
"""

import json
import logging

from django.db import models

from sessionhub import clock
from sessionhub.conf import get_settings
from sessionhub.redis import REDIS_UNAVAILABLE, get_redis
from sessionhub.rediskeys import keys

logger = logging.getLogger(__name__)

MAX_USERNAME = 150
MAX_USER_AGENT = 512


class EventType(models.TextChoices):
    LOGIN = "login", "Login"
    LOGIN_FAILED = "login_failed", "Login failed"
    TOKEN_REFRESH = "token_refresh", "Token refresh"
    LOGOUT = "logout", "Logout"
    SESSION_REVOKED = "session_revoked", "Session revoked"
    SESSION_EXPIRED = "session_expired", "Session expired"
    LOCKED_OUT = "locked_out", "Locked out"
    LOCKOUT_LIFTED = "lockout_lifted", "Lock-out lifted"
    REFRESH_TOKEN_REUSED = "refresh_token_reused", "Refresh token reused"


class EndReason(models.TextChoices):
    LOGOUT = "logout", "Logout"
    IDLE_TIMEOUT = "idle_timeout", "Idle timeout"
    ABSOLUTE_TIMEOUT = "absolute_timeout", "Absolute timeout"
    REVOKED = "revoked", "Revoked"
    PASSWORD_CHANGED = "password_changed", "Password changed"
    USER_DISABLED = "user_disabled", "User disabled"
    REFRESH_REUSE = "refresh_reuse", "Refresh token reused"
    SESSION_LIMIT = "session_limit", "Session limit reached"


class FailureReason(models.TextChoices):
    """Bounded reasons for a failed login: safe as a metric label."""

    BAD_PASSWORD = "bad_password", "Bad password"
    UNKNOWN_USER = "unknown_user", "Unknown user"
    INACTIVE = "inactive", "Inactive user"
    THROTTLED = "throttled", "Throttled"


END_EVENT_TYPE = {
    EndReason.LOGOUT: EventType.LOGOUT,
    EndReason.IDLE_TIMEOUT: EventType.SESSION_EXPIRED,
    EndReason.ABSOLUTE_TIMEOUT: EventType.SESSION_EXPIRED,
    EndReason.REVOKED: EventType.SESSION_REVOKED,
    EndReason.PASSWORD_CHANGED: EventType.SESSION_REVOKED,
    EndReason.USER_DISABLED: EventType.SESSION_REVOKED,
    EndReason.REFRESH_REUSE: EventType.SESSION_REVOKED,
    EndReason.SESSION_LIMIT: EventType.SESSION_REVOKED,
}


def clean_text(value: str | None, limit: int) -> str:
    """Text as PostgreSQL can store it: no NUL, no lone surrogates, bounded length."""
    if not value:
        return ""
    value = value.replace("\x00", "")[:limit]
    return value.encode("utf-8", "replace").decode("utf-8")


def event_payload(
    event_type: EventType,
    *,
    user_id: int | None = None,
    username: str = "",
    ip: str = "",
    user_agent: str = "",
    sid: str = "",
    reason: str = "",
    actor_id: int | None = None,
    occurred_at: float | None = None,
) -> str:
    payload = {
        "type": str(event_type),
        "ts": occurred_at if occurred_at is not None else clock.now(),
        "uid": user_id,
        "username": clean_text(username, MAX_USERNAME),
        "ip": ip,
        "ua": clean_text(user_agent, MAX_USER_AGENT),
        "sid": sid,
        "reason": reason,
        "actor": actor_id,
    }
    return json.dumps(payload, separators=(",", ":"))


def append(payload: str) -> None:
    """Append one event; when Redis is away, hand it to the tracker to deliver later."""
    from accounts.tracking import tracker

    try:
        get_redis().xadd(
            keys.events(),
            {"d": payload},
            maxlen=get_settings().EVENT_STREAM_MAXLEN,
            approximate=True,
        )
    except REDIS_UNAVAILABLE:
        tracker.defer_event(payload)


def token_refreshed(*, user_id: int, sid: str, ip: str, user_agent: str) -> None:
    append(
        event_payload(
            EventType.TOKEN_REFRESH, user_id=user_id, sid=sid, ip=ip, user_agent=user_agent
        )
    )


def lockout_lifted(*, username: str, ip: str, actor_id: int) -> None:
    append(event_payload(EventType.LOCKOUT_LIFTED, username=username, ip=ip, actor_id=actor_id))


def refresh_token_reused(*, user_id: int, sid: str, ip: str, user_agent: str) -> None:
    """A rotated refresh token came back: someone holds a copy. Its session is ended with it."""
    append(
        event_payload(
            EventType.REFRESH_TOKEN_REUSED,
            user_id=user_id,
            sid=sid,
            ip=ip,
            user_agent=user_agent,
            reason=str(EndReason.REFRESH_REUSE),
        )
    )
