"""Login throttling on Redis counters, in the style of saleor's account/throttling.py.

Why not django-axes: axes keeps its counters in SQL (a write per failure, the very flood we
keep away from PostgreSQL), needs a middleware and backend pair that JWT views bypass, and
locks on its own view of the client IP. A small Redis module does the same job in a couple of
atomic round trips per login and shares our client-IP resolution.

Every password login goes through it — the API's token endpoint and the admin's login form both
call `accounts.services.password_authenticate` — so both count and lock alike.

Policy (the Lua scripts' headers have the arithmetic):

* addresses are counted by *bucket* (`ip_bucket`): an IPv4 address, or the /64 network of an
  IPv6 address — one subscriber's network, in which a host takes a new address at will; requests
  whose address could not be resolved share one bucket;
* per (username, bucket) pair — the username case-folded — after LOGIN_FAILURE_LIMIT failures
  within LOGIN_FAILURE_WINDOW_SECONDS the pair is locked for LOGIN_LOCKOUT_BASE_SECONDS,
  doubling with each further failure up to LOGIN_LOCKOUT_MAX_SECONDS;
* per bucket, by the number of distinct usernames that failed from it (credential stuffing),
  past LOGIN_IP_USERNAME_LIMIT;
* per account, from anywhere (distributed guessing; OWASP ASVS 2.2.1 allows at most 100 failed
  attempts an hour): once LOGIN_ACCOUNT_FAILURE_LIMIT password checks of the account are
  counted within the window — counted when admitted, taken back on success — the account is in
  a *slow lane*: addresses it has not logged in from may make one attempt per
  LOGIN_ACCOUNT_DELAY_SECONDS between them, whoever comes first; the others are refused with
  the time of the next turn. So an account sees at most LIMIT + 3600 / DELAY password checks
  an hour from new addresses (80 with the defaults). The real user is never locked out by it:
  from an address bucket where the account logged in during the last LOGIN_KNOWN_ADDRESS_DAYS
  the lane does not apply (only that pair's own lock does), and from a new address the wait is
  one turn — unless an attacker takes every turn, which is when the known addresses matter.
  We chose this over locking the account (a denial-of-service tool: lock pairs, not accounts)
  and over a delay for everyone (an attacker would set the pace for the real user too);
* while locked every attempt, the correct password included, gets 429 with Retry-After and
  the same body for real and unknown usernames (the lane is kept for unknown usernames too,
  and only a real login makes an address known); a success resets the pair;
* refusals do not flood the audit trail or the logs: each lock — pair, bucket or the account's
  lane — is a *lock period*. Its start writes `locked_out`; the first refusal in it writes one
  `login_failed` (reason `throttled`) event and one log line; later refusals only count (in the
  period, and in `login_failures_total{reason="throttled"}`). When the period ends, by time or
  by an admin's lift, a `lockout_lifted` event reports the count (reason `refused=N`, the admin
  as actor): `lockout_periods_close` runs every 30 s from beat and dates it at the lock's end;
* with Redis away we cannot count, so logins are not throttled until it is back (logged).
"""

import hashlib
import ipaddress
import logging
import math
import secrets
from dataclasses import dataclass
from typing import cast

from core.conf import get_settings
from core.redis import REDIS_UNAVAILABLE, get_redis
from core.rediskeys import keys

from . import clientip, events
from .events import FailureReason, LockScope
from .livesessions import script

logger = logging.getLogger(__name__)

# The bucket of the requests whose client address could not be resolved (not an address).
UNRESOLVED_BUCKET = "unresolved"
IPV6_BUCKET_PREFIX = 64
# An account remembers this many address buckets it logged in from (the most recent).
KNOWN_BUCKETS_KEPT = 20


@dataclass(frozen=True, slots=True)
class Lockout:
    key: str
    scope: str  # a LockScope
    username: str
    ip: str  # the address bucket, "" for an account's lane
    locked_until: float

    def retry_after(self, now: float) -> int:
        # Rounded first: the stored time has microsecond precision, not float noise.
        return max(1, math.ceil(round(self.locked_until - now, 3)))


@dataclass(frozen=True, slots=True)
class Admission:
    """The gate's answer to one attempt: admitted (with the ticket a success hands back), or
    refused until `retry_at` by a lock of `scope`."""

    ticket: str = ""
    retry_at: float = 0.0
    scope: str = ""

    @property
    def refused(self) -> bool:
        return bool(self.scope)

    def retry_after(self, now: float) -> int:
        return max(1, math.ceil(round(self.retry_at - now, 3)))


def ip_bucket(ip: str) -> str:
    """What the per-address counters count by: an IPv4 address, the /64 network of an IPv6
    address, or one shared bucket when there is no address."""
    address = clientip.parse(ip)
    if address is None:
        return UNRESOLVED_BUCKET
    if address.version == 6:
        return str(ipaddress.IPv6Network((address, IPV6_BUCKET_PREFIX), strict=False))
    return str(address)


def username_key(username: str) -> str:
    """Case-insensitive, fixed-length: usernames never appear in key names."""
    return hashlib.sha256(username.casefold().encode("utf-8", "replace")).hexdigest()[:32]


def pair_key(username: str, ip: str) -> str:
    return keys.throttle_pair(f"{username_key(username)}:{ip_bucket(ip)}")


def _scope_of(key: str) -> LockScope | None:
    for scope, prefix in (
        (LockScope.IP, keys.throttle_ip("")),
        (LockScope.ACCOUNT, keys.throttle_account("")),
        (LockScope.USER_IP, keys.throttle_pair("")),
    ):
        if key.startswith(prefix):
            return scope
    return None


def attempt_admit(*, username: str, ip: str, user_agent: str, now: float) -> Admission:
    """Admit one login attempt, or refuse it (and count the refusal) while a lock holds.

    Redis away: admitted (fail open, logged)."""
    conf = get_settings()
    user_hash, bucket, ticket = username_key(username), ip_bucket(ip), secrets.token_hex(8)
    refusal = events.login_failed_payload(
        username=username,
        ip=ip,
        user_agent=user_agent,
        reason=FailureReason.THROTTLED,
        occurred_at=now,
    )
    try:
        answer = script("login_gate")(
            keys=[
                pair_key(username, ip),
                keys.throttle_ip(bucket),
                keys.throttle_account(user_hash),
                keys.throttle_account_attempts(user_hash),
                keys.throttle_known(user_hash),
                keys.lockout_periods(),
                keys.lockout_periods_due(),
                keys.lockouts(),
                keys.stats(),
                keys.events(),
            ],
            args=[
                repr(now),
                bucket,
                repr(now - conf.LOGIN_KNOWN_ADDRESS_DAYS * 86400),
                conf.LOGIN_FAILURE_WINDOW_SECONDS,
                conf.LOGIN_ACCOUNT_FAILURE_LIMIT,
                conf.LOGIN_ACCOUNT_DELAY_SECONDS,
                ticket,
                conf.EVENT_STREAM_MAXLEN,
                refusal,
                events.locked_out_payload(
                    username=username, ip=ip, user_agent=user_agent, occurred_at=now
                ),
                events.lockout_lifted_payload(username=username, ip=ip, user_agent=user_agent),
                events.clean_text(username, events.MAX_USERNAME),
            ],
        )
    except REDIS_UNAVAILABLE:
        logger.warning("login throttling skipped: redis unavailable")
        return Admission()
    if not answer:
        return Admission(ticket=ticket)
    retry_at, scope, first = float(answer[0]), answer[1].decode(), int(answer[2])
    if first:
        logger.warning(
            "login refused: %s lock in force; its further refusals are counted, not logged",
            scope,
        )
    return Admission(retry_at=retry_at, scope=scope)


def failure_record(
    *, username: str, ip: str, user_agent: str, reason: FailureReason, now: float
) -> None:
    conf = get_settings()
    bucket = ip_bucket(ip)
    failed = events.login_failed_payload(
        username=username, ip=ip, user_agent=user_agent, reason=reason, occurred_at=now
    )
    try:
        script("login_failure")(
            keys=[
                pair_key(username, ip),
                keys.throttle_ip_usernames(bucket),
                keys.throttle_ip(bucket),
                keys.lockouts(),
                keys.stats(),
                keys.events(),
                keys.lockout_periods(),
                keys.lockout_periods_due(),
                keys.per_minute("login_failures", int(now // 60)),
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
                bucket,
                conf.EVENT_STREAM_MAXLEN,
                failed,
                events.locked_out_payload(
                    username=username, ip=ip, user_agent=user_agent, occurred_at=now
                ),
                str(reason),
                events.lockout_lifted_payload(username=username, ip=ip, user_agent=user_agent),
                secrets.token_hex(8),
            ],
        )
    except REDIS_UNAVAILABLE:
        logger.warning("login failure not counted: redis unavailable")
        events.append(failed)


def success_record(*, username: str, ip: str, ticket: str, now: float) -> None:
    """A success resets its pair, takes its attempt back from the account's log and makes its
    address bucket known to the account (the slow lane no longer applies there)."""
    user_hash, bucket = username_key(username), ip_bucket(ip)
    key, known = pair_key(username, ip), keys.throttle_known(user_hash)
    try:
        pipe = get_redis().pipeline(transaction=False)
        pipe.delete(key)
        pipe.zrem(keys.lockouts(), key)
        if ticket:
            pipe.zrem(keys.throttle_account_attempts(user_hash), ticket)
        if bucket != UNRESOLVED_BUCKET:
            pipe.hset(known, bucket, repr(now))
            pipe.expire(known, get_settings().LOGIN_KNOWN_ADDRESS_DAYS * 86400)
            pipe.hlen(known)
        results = pipe.execute()
        if bucket != UNRESOLVED_BUCKET and results[-1] > KNOWN_BUCKETS_KEPT:
            _known_trim(known)
    except REDIS_UNAVAILABLE:
        logger.warning("login throttle reset skipped: redis unavailable")


def _known_trim(key: str) -> None:
    client = get_redis()
    seen = sorted(client.hgetall(key).items(), key=lambda item: float(item[1]))
    stale = [bucket for bucket, _ in seen[:-KNOWN_BUCKETS_KEPT]]
    if stale:
        client.hdel(key, *stale)


def lockouts_current(*, now: float, limit: int = 500) -> list[Lockout]:
    """Locks in force now, soonest to expire first."""
    client = get_redis()
    client.zremrangebyscore(keys.lockouts(), "-inf", now)
    members = cast(
        list[tuple[bytes, float]],
        client.zrangebyscore(keys.lockouts(), now, "+inf", start=0, num=limit, withscores=True),
    )
    pipe = client.pipeline(transaction=False)
    for member, _ in members:
        pipe.hmget(member, "user", "ip")
    found = []
    for (raw_key, until), (user, ip) in zip(members, pipe.execute(), strict=True):
        key = raw_key.decode()
        found.append(
            Lockout(
                key,
                str(_scope_of(key)),
                (user or b"").decode("utf-8", "replace"),
                (ip or b"").decode(),
                until,
            )
        )
    return found


def lockout_lift(*, key: str, actor_id: int, now: float) -> Lockout | None:
    """Remove one lock (pair, bucket or account lane) and its counters, closing its lock period
    with the admin as actor. Returns what was lifted."""
    scope = _scope_of(key)
    if scope is None:
        return None
    conf, client = get_settings(), get_redis()
    user, ip, until, period = cast(
        list[bytes | None], client.hmget(key, "user", "ip", "until", "period")
    )
    closed = 0
    if period:
        closed = script("lockout_close")(
            keys=[keys.lockout_periods(), keys.lockout_periods_due(), keys.events()],
            args=["one", repr(now), conf.EVENT_STREAM_MAXLEN, period, actor_id],
        )
    pipe = client.pipeline(transaction=True)
    pipe.delete(key)
    pipe.zrem(keys.lockouts(), key)
    if scope is LockScope.IP and ip:
        pipe.delete(keys.throttle_ip_usernames(ip.decode()))
    if scope is LockScope.ACCOUNT:
        pipe.delete(keys.throttle_account_attempts(key.removeprefix(keys.throttle_account(""))))
    pipe.execute()
    if until is None:
        return None
    lifted = Lockout(
        key,
        str(scope),
        (user or b"").decode("utf-8", "replace"),
        (ip or b"").decode(),
        float(until),
    )
    if not closed:  # a lock without period bookkeeping: the lift is still recorded
        events.append(
            events.lockout_lifted_payload(
                username=lifted.username,
                ip=clientip.canonical(lifted.ip),
                occurred_at=now,
                actor_id=actor_id,
            )
        )
    return lifted


def lockout_periods_close(*, now: float, batch: int = 500) -> int:
    """Close the lock periods whose lock has ended: one lockout_lifted event each, dated at the
    lock's end, with the attempts it refused. Returns how many were closed."""
    conf, closed = get_settings(), 0
    close = script("lockout_close")
    while True:
        written, taken = close(
            keys=[keys.lockout_periods(), keys.lockout_periods_due(), keys.events()],
            args=["due", repr(now), conf.EVENT_STREAM_MAXLEN, batch],
        )
        closed += written
        if taken < batch:
            return closed


def refusal_response_logged(response) -> None:
    """Mark a lock's 429 as logged: Django's request logger would write a warning per refused
    request, and the throttle has already logged once for the whole lock period."""
    response._has_been_logged = True
