"""Login throttling on Redis counters, in the style of saleor's account/throttling.py.

Why not django-axes: axes keeps its counters in SQL (a write per failure, the very flood we
keep away from PostgreSQL), needs a middleware and backend pair that JWT views bypass, and
locks on its own view of the client IP. A small Redis module does the same job in one
atomic round trip per failure and shares our client-IP resolution.

Policy (docstring of `login_failure.lua` for the arithmetic):

* per (username, IP) pair — the username case-folded — after LOGIN_FAILURE_LIMIT failures
  within LOGIN_FAILURE_WINDOW_SECONDS the pair is locked for LOGIN_LOCKOUT_BASE_SECONDS,
  doubling with each further failure up to LOGIN_LOCKOUT_MAX_SECONDS;
* per IP, by the number of distinct usernames that failed from it (credential stuffing),
  past LOGIN_IP_USERNAME_LIMIT;
* while locked every attempt, the correct password included, gets 429 with Retry-After and
  the same body for real and unknown usernames; a success resets the pair;
* with Redis away we cannot count, so logins are not throttled until it is back (logged).
"""

import hashlib
import logging
import math
from dataclasses import dataclass

from sessionhub.conf import get_settings
from sessionhub.redis import REDIS_UNAVAILABLE, get_redis
from sessionhub.rediskeys import keys

from . import events
from .events import EventType, FailureReason
from .livesessions import script

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Lockout:
    key: str
    scope: str  # "user_ip" or "ip"
    username: str
    ip: str
    locked_until: float

    def retry_after(self, now: float) -> int:
        # Rounded first: the stored time has microsecond precision, not float noise.
        return max(1, math.ceil(round(self.locked_until - now, 3)))


def username_key(username: str) -> str:
    """Case-insensitive, fixed-length: usernames never appear in key names."""
    return hashlib.sha256(username.casefold().encode("utf-8", "replace")).hexdigest()[:32]


def pair_key(username: str, ip: str) -> str:
    return keys.throttle_pair(f"{username_key(username)}:{ip}")


def current_lockout(*, username: str, ip: str, now: float) -> Lockout | None:
    """The lock that refuses this attempt, if any. Redis away: None (fail open, logged)."""
    pair, ip_lock = pair_key(username, ip), keys.throttle_ip(ip)
    try:
        pipe = get_redis().pipeline(transaction=False)
        pipe.hget(pair, "until")
        pipe.hget(ip_lock, "until")
        pair_until, ip_until = pipe.execute()
    except REDIS_UNAVAILABLE:
        logger.warning("login throttling skipped: redis unavailable")
        return None
    candidates = [
        Lockout(pair, "user_ip", username, ip, float(pair_until or 0)),
        Lockout(ip_lock, "ip", "", ip, float(ip_until or 0)),
    ]
    active = [lock for lock in candidates if lock.locked_until > now]
    return max(active, key=lambda lock: lock.locked_until) if active else None


def failure_record(
    *, username: str, ip: str, user_agent: str, reason: FailureReason, now: float
) -> None:
    conf = get_settings()
    failed = events.event_payload(
        EventType.LOGIN_FAILED,
        username=username,
        ip=ip,
        user_agent=user_agent,
        reason=str(reason),
        occurred_at=now,
    )
    locked = events.event_payload(
        EventType.LOCKED_OUT, username=username, ip=ip, user_agent=user_agent, occurred_at=now
    )
    try:
        script("login_failure")(
            keys=[
                pair_key(username, ip),
                keys.throttle_ip_usernames(ip),
                keys.throttle_ip(ip),
                keys.lockouts(),
                keys.stats(),
                keys.events(),
            ],
            args=[
                repr(now),
                conf.LOGIN_FAILURE_WINDOW_SECONDS,
                conf.LOGIN_FAILURE_LIMIT,
                conf.LOGIN_IP_USERNAME_LIMIT,
                conf.LOGIN_LOCKOUT_BASE_SECONDS,
                conf.LOGIN_LOCKOUT_MAX_SECONDS,
                username_key(username),
                events.clean_text(username, events.MAX_USERNAME),
                ip,
                conf.EVENT_STREAM_MAXLEN,
                failed,
                locked,
                str(reason),
            ],
        )
    except REDIS_UNAVAILABLE:
        logger.warning("login failure not counted: redis unavailable")
        events.append(failed)


def throttled_attempt_record(*, username: str, ip: str, user_agent: str, now: float) -> None:
    """An attempt refused while locked: an event and a counter, never a longer lock."""
    payload = events.event_payload(
        EventType.LOGIN_FAILED,
        username=username,
        ip=ip,
        user_agent=user_agent,
        reason=str(FailureReason.THROTTLED),
        occurred_at=now,
    )
    try:
        pipe = get_redis().pipeline(transaction=False)
        pipe.xadd(
            keys.events(),
            {"d": payload},
            maxlen=get_settings().EVENT_STREAM_MAXLEN,
            approximate=True,
        )
        pipe.hincrby(keys.stats(), f"login_failures:{FailureReason.THROTTLED}", 1)
        pipe.execute()
    except REDIS_UNAVAILABLE:
        events.append(payload)


def success_record(*, username: str, ip: str) -> None:
    key = pair_key(username, ip)
    try:
        pipe = get_redis().pipeline(transaction=False)
        pipe.delete(key)
        pipe.zrem(keys.lockouts(), key)
        pipe.execute()
    except REDIS_UNAVAILABLE:
        logger.warning("login throttle reset skipped: redis unavailable")


def lockouts_current(*, now: float, limit: int = 500) -> list[Lockout]:
    """Locks in force now, soonest to expire first."""
    client = get_redis()
    client.zremrangebyscore(keys.lockouts(), "-inf", now)
    members = client.zrangebyscore(
        keys.lockouts(), now, "+inf", start=0, num=limit, withscores=True
    )
    pipe = client.pipeline(transaction=False)
    for key, _ in members:
        pipe.hmget(key, "user", "ip")
    found = []
    for (key, until), (user, ip) in zip(members, pipe.execute(), strict=True):
        key = key.decode()
        scope = "ip" if key.startswith(keys.throttle_ip("")) else "user_ip"
        found.append(
            Lockout(
                key, scope, (user or b"").decode("utf-8", "replace"), (ip or b"").decode(), until
            )
        )
    return found


def lockout_lift(*, key: str) -> Lockout | None:
    """Remove one lock (pair or IP) and its counters. Returns what was lifted."""
    client = get_redis()
    if not (key.startswith(keys.throttle_pair("")) or key.startswith(keys.throttle_ip(""))):
        return None
    user, ip, until = client.hmget(key, "user", "ip", "until")
    pipe = client.pipeline(transaction=True)
    pipe.delete(key)
    pipe.zrem(keys.lockouts(), key)
    if key.startswith(keys.throttle_ip("")) and ip:
        pipe.delete(keys.throttle_ip_usernames(ip.decode()))
    pipe.execute()
    if until is None:
        return None
    scope = "ip" if key.startswith(keys.throttle_ip("")) else "user_ip"
    return Lockout(
        key, scope, (user or b"").decode("utf-8", "replace"), (ip or b"").decode(), float(until)
    )
