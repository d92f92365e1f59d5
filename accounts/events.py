"""Security and session events: one small function per event type, all to the Redis stream.

Events go to a bounded Redis stream, never straight to PostgreSQL: a login flood must not
become a database flood. The audit sync moves them to PostgreSQL in bulk. Nothing here ever
carries a password or a raw token.
"""

import json
import logging
from collections.abc import Callable

from django.db import models

from core import clock
from core.conf import get_settings
from core.redis import REDIS_UNAVAILABLE, get_redis
from core.rediskeys import keys

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
    SESSION_ANOMALY = "session_anomaly", "Session anomaly"
    REFRESH_TOKEN_REUSED = "refresh_token_reused", "Refresh token reused"


class EndReason(models.TextChoices):
    LOGOUT = "logout", "Logout"
    IDLE_TIMEOUT = "idle_timeout", "Idle timeout"
    ABSOLUTE_TIMEOUT = "absolute_timeout", "Absolute timeout"
    REVOKED = "revoked", "Revoked"
    PASSWORD_CHANGED = "password_changed", "Password changed"
    USER_DISABLED = "user_disabled", "User disabled"
    ANOMALY = "anomaly", "Used from two places at once"
    REFRESH_REUSE = "refresh_reuse", "Refresh token reused"
    SESSION_LIMIT = "session_limit", "Session limit reached"


class FailureReason(models.TextChoices):
    """Bounded reasons for a failed login: safe as a metric label."""

    BAD_PASSWORD = "bad_password", "Bad password"
    UNKNOWN_USER = "unknown_user", "Unknown user"
    INACTIVE = "inactive", "Inactive user"
    THROTTLED = "throttled", "Throttled"


class LockScope(models.TextChoices):
    """What a login lock-out covers (bounded: a metric label)."""

    USER_IP = "user_ip", "Username + address"
    IP = "ip", "Address (many usernames)"
    ACCOUNT = "account", "Account, from new addresses"


END_EVENT_TYPE = {
    EndReason.LOGOUT: EventType.LOGOUT,
    EndReason.IDLE_TIMEOUT: EventType.SESSION_EXPIRED,
    EndReason.ABSOLUTE_TIMEOUT: EventType.SESSION_EXPIRED,
    EndReason.REVOKED: EventType.SESSION_REVOKED,
    EndReason.PASSWORD_CHANGED: EventType.SESSION_REVOKED,
    EndReason.USER_DISABLED: EventType.SESSION_REVOKED,
    EndReason.ANOMALY: EventType.SESSION_REVOKED,
    EndReason.REFRESH_REUSE: EventType.SESSION_REVOKED,
    EndReason.SESSION_LIMIT: EventType.SESSION_REVOKED,
}


def clean_text(value: str | None, limit: int) -> str:
    """Text as PostgreSQL can store it: no NUL, no lone surrogates, bounded length."""
    if not value:
        return ""
    value = value.replace("\x00", "")[:limit]
    return value.encode("utf-8", "replace").decode("utf-8")


def _payload(
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
    filled_by_script: tuple[str, ...] = (),
) -> str:
    """The one layout of every event (what the audit sync reads). `filled_by_script` names the
    keys a Lua script sets when it writes the event; they are present, empty, from the start,
    so Python and Lua agree on the keys (accounts/tests/test_event_payloads.py)."""
    payload: dict[str, object] = {
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
    payload.update(dict.fromkeys(filled_by_script))
    return json.dumps(payload, separators=(",", ":"))


# Where an event waits while Redis is away: the tracker's buffer, delivered by its next flush.
# Set by AccountsConfig.ready(), so that this module (which the tracker imports) does not import
# the tracker back.
_deliver_later: Callable[[str], None] | None = None


def deliver_later_with(sink: Callable[[str], None]) -> None:
    global _deliver_later
    _deliver_later = sink


def append(payload: str) -> None:
    """Append one event; when Redis is away, hand it to the tracker to deliver later."""
    try:
        get_redis().xadd(
            keys.events(),
            {"d": payload},
            maxlen=get_settings().EVENT_STREAM_MAXLEN,
            approximate=True,
        )
    except REDIS_UNAVAILABLE:
        if _deliver_later is None:
            logger.warning("event not recorded: redis unavailable")
            return
        _deliver_later(payload)


def login_payload(
    *,
    user_id: int,
    username: str,
    ip: str,
    user_agent: str,
    sid: str = "",
    via: str = "",
    occurred_at: float | None = None,
) -> str:
    """A successful login: `sid` names the API session it opened; an admin login opens none and
    says so in `reason` (via="admin")."""
    return _payload(
        EventType.LOGIN,
        user_id=user_id,
        sid=sid,
        ip=ip,
        user_agent=user_agent,
        username=username,
        reason=via,
        occurred_at=occurred_at,
    )


def login_failed_payload(
    *, username: str, ip: str, user_agent: str, reason: FailureReason, occurred_at: float
) -> str:
    """A failed login, or the first attempt a lock refused in its lock period (reason
    `throttled`; the period's lockout_lifted event counts the rest)."""
    return _payload(
        EventType.LOGIN_FAILED,
        username=username,
        ip=ip,
        user_agent=user_agent,
        reason=str(reason),
        occurred_at=occurred_at,
    )


def locked_out_payload(*, username: str, ip: str, user_agent: str, occurred_at: float) -> str:
    """A lock period starts; the lock script sets `reason` to its LockScope and `until`."""
    return _payload(
        EventType.LOCKED_OUT,
        username=username,
        ip=ip,
        user_agent=user_agent,
        occurred_at=occurred_at,
        filled_by_script=("until",),
    )


def lockout_lifted_payload(
    *,
    username: str,
    ip: str,
    user_agent: str = "",
    occurred_at: float | None = None,
    actor_id: int | None = None,
) -> str:
    """A lock period ends — by itself (no actor) or lifted by an admin (actor) — with the number
    of attempts it refused in `reason` ("refused=N"). Stored as a template when the lock
    starts; accounts/lua/lockout_close.lua fills in `ts`, `reason` and `actor` when the period
    closes."""
    return _payload(
        EventType.LOCKOUT_LIFTED,
        username=username,
        ip=ip,
        user_agent=user_agent,
        actor_id=actor_id,
        occurred_at=occurred_at,
    )


def token_refresh_payload(*, user_id: int, sid: str, ip: str, user_agent: str) -> str:
    return _payload(EventType.TOKEN_REFRESH, user_id=user_id, sid=sid, ip=ip, user_agent=user_agent)


def token_refreshed(*, user_id: int, sid: str, ip: str, user_agent: str) -> None:
    append(token_refresh_payload(user_id=user_id, sid=sid, ip=ip, user_agent=user_agent))


def session_ended_payload(*, sid: str, reason: EndReason, actor_id: int | None = None) -> str:
    """`logout`, `session_revoked` or `session_expired`: the type follows from the end reason
    (END_EVENT_TYPE). The end script (accounts/lua/end_session.lua) fills in `uid`, `ts` and
    `duration` when it ends the session, exactly once."""
    return _payload(
        END_EVENT_TYPE[reason],
        sid=sid,
        reason=str(reason),
        actor_id=actor_id,
        filled_by_script=("duration",),
    )


def session_anomaly_template() -> str:
    """The `session_anomaly` event as the tracking flush script completes it, per session.

    The script (accounts/lua/track_flush.lua) notices the anomaly and appends the event in
    the same call; it fills in `uid`, `sid`, `ts`, `ip` and `ua` (the client that has just
    appeared) and `reason`: the /24 or /64 network the session was in use from until then.
    """
    return _payload(EventType.SESSION_ANOMALY)


def refresh_token_reused_payload(*, user_id: int, sid: str, ip: str, user_agent: str) -> str:
    """A rotated refresh token came back: someone holds a copy. Its session is ended with it."""
    return _payload(
        EventType.REFRESH_TOKEN_REUSED,
        user_id=user_id,
        sid=sid,
        ip=ip,
        user_agent=user_agent,
        reason=str(EndReason.REFRESH_REUSE),
    )


def refresh_token_reused(*, user_id: int, sid: str, ip: str, user_agent: str) -> None:
    append(refresh_token_reused_payload(user_id=user_id, sid=sid, ip=ip, user_agent=user_agent))
