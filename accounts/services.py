"""Writes about accounts and their sessions. Views, admin, tasks and commands call these."""

import logging
import secrets
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError
from rest_framework_simplejwt.tokens import RefreshToken, UntypedToken

from sessionhub import clock
from sessionhub.conf import get_settings
from sessionhub.redis import REDIS_UNAVAILABLE, get_redis
from sessionhub.rediskeys import keys

from . import events, livesessions, throttling
from .events import EndReason, FailureReason
from .models import User
from .tracking import tracker

logger = logging.getLogger(__name__)

INVALID_CREDENTIALS = "No active account found with the given credentials"


class LoginFailed(Exception):
    """Wrong credentials, unknown user or inactive user: one generic answer for all."""


class LoginThrottled(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__(f"Too many failed attempts; retry in {retry_after} s")
        self.retry_after = retry_after


class SessionEnded(Exception):
    pass


@dataclass(frozen=True)
class TokenPair:
    access: str
    refresh: str
    sid: str


@dataclass(frozen=True)
class AdminAccount:
    username: str
    created: bool
    password: str | None


# --- login, refresh, logout ----------------------------------------------------------------


def _check_credentials(username: str, password: str) -> tuple[User | None, FailureReason | None]:
    manager = get_user_model()._default_manager
    try:
        user = manager.get_by_natural_key(username)
    except User.DoesNotExist:
        # Spend the time a real check would: an unknown username must not answer faster.
        User().set_password(password)
        return None, FailureReason.UNKNOWN_USER
    if not user.check_password(password):
        return None, FailureReason.BAD_PASSWORD
    if not user.is_active:
        return None, FailureReason.INACTIVE
    return user, None


def _issue(user_id: int, sid: str, session_started: int) -> RefreshToken:
    refresh = RefreshToken()
    refresh["user_id"] = user_id
    refresh["sid"] = sid
    refresh["sst"] = session_started
    refresh["sla"] = session_started  # the login is the session's first activity
    _cap_expiry(refresh, session_started)
    refresh.outstand()
    return refresh


def _cap_expiry(refresh: RefreshToken, session_started: int) -> None:
    """A refresh token never outlives its session's absolute timeout.

    The session's remaining life is measured on the session clock and added to the token's
    own issue time, so the cap holds whichever clock the token library reads.
    """
    remaining = session_started + get_settings().ABSOLUTE_TIMEOUT - clock.now()
    cap = refresh["iat"] + max(int(remaining), 0)
    if refresh["exp"] > cap:
        refresh["exp"] = cap


def password_authenticate(
    *, username: str, password: str, ip: str, user_agent: str, now: float | None = None
) -> User:
    """The one gate of every password login — the API's token endpoint and the admin's login
    form: lock check, credential check, failure counting and success reset (accounts.throttling
    has the policy). Raises LoginThrottled (429) or LoginFailed (one generic answer)."""
    now = clock.now() if now is None else now
    admission = throttling.attempt_admit(username=username, ip=ip, user_agent=user_agent, now=now)
    if admission.refused:
        raise LoginThrottled(admission.retry_after(now))
    user, failure = _check_credentials(username, password)
    if user is None:
        throttling.failure_record(
            username=username, ip=ip, user_agent=user_agent, reason=failure, now=now
        )
        raise LoginFailed(INVALID_CREDENTIALS)
    throttling.success_record(username=username, ip=ip, ticket=admission.ticket, now=now)
    return user


def login(*, username: str, password: str, ip: str, user_agent: str) -> TokenPair:
    now = clock.now()
    user = password_authenticate(
        username=username, password=password, ip=ip, user_agent=user_agent, now=now
    )
    sid, started = livesessions.new_sid(), int(now)
    refresh = _issue(user.pk, sid, started)
    session = {
        "sid": sid,
        "user_id": user.pk,
        "started_at": float(started),
        "ip": ip,
        "user_agent": user_agent,
    }
    try:
        livesessions.start(**session, username=user.get_username())
    except REDIS_UNAVAILABLE:
        # Login keeps working: the session is opened in Redis by the first flush that gets there.
        login_event = events.login_payload(
            user_id=user.pk,
            sid=sid,
            ip=ip,
            user_agent=user_agent,
            username=user.get_username(),
            occurred_at=float(started),
        )
        tracker.defer_start(**session, login_event=login_event)
    return TokenPair(access=str(refresh.access_token), refresh=str(refresh), sid=sid)


def admin_login(*, username: str, password: str, ip: str, user_agent: str) -> User:
    """A login to the admin: the same gate as the API's, staff only, recorded as a `login`
    event without a session id (the admin keeps its own cookie session)."""
    user = password_authenticate(username=username, password=password, ip=ip, user_agent=user_agent)
    if not user.is_staff:
        raise LoginFailed(INVALID_CREDENTIALS)
    events.append(
        events.login_payload(
            user_id=user.pk,
            username=user.get_username(),
            ip=ip,
            user_agent=user_agent,
            via="admin",
        )
    )
    return user


def _session_check(*, sid: str, started: float, now: float) -> livesessions.LiveSession | None:
    """Refuse a refresh/verify for a session that has ended, timing it out if it is due.

    Returns the live session as Redis has it (None when Redis is away or does not know it).
    """
    conf = get_settings()
    if now - started >= conf.ABSOLUTE_TIMEOUT:
        tracker.end(
            sid=sid, reason=EndReason.ABSOLUTE_TIMEOUT, ended_at=started + conf.ABSOLUTE_TIMEOUT
        )
        raise SessionEnded
    try:
        session = livesessions.get(sid)
        ended_recently = get_redis().zscore(keys.ended_index(), sid) is not None
    except REDIS_UNAVAILABLE:
        logger.warning("session check skipped: redis unavailable")
        return None
    if ended_recently or (session is not None and session.is_ended):
        raise SessionEnded
    if session is not None and now - session.last_active >= conf.IDLE_TIMEOUT:
        result = tracker.end(
            sid=sid, reason=EndReason.IDLE_TIMEOUT, ended_at=now, idle_timeout=conf.IDLE_TIMEOUT
        )
        if result != 2:
            raise SessionEnded
    return session


def _refresh_claims(raw: str) -> tuple[RefreshToken, str, int, int]:
    try:
        refresh = RefreshToken(raw)  # signature, expiry, type and blacklist
    except TokenError as exc:
        raise InvalidToken(str(exc)) from exc
    sid, user_id, started = refresh.get("sid"), refresh.get("user_id"), refresh.get("sst")
    if not isinstance(sid, str) or not isinstance(user_id, int) or not isinstance(started, int):
        raise InvalidToken("Token has no session.")
    return refresh, sid, user_id, started


def token_refresh(*, raw_refresh: str, ip: str, user_agent: str) -> TokenPair:
    """Rotate a refresh token within the same session (same sid); the old one is blacklisted."""
    refresh, sid, user_id, started = _refresh_claims(raw_refresh)
    now = clock.now()
    session = _session_check(sid=sid, started=started, now=now)
    if not User.objects.filter(pk=user_id, is_active=True).exists():
        tracker.end(sid=sid, reason=EndReason.USER_DISABLED, ended_at=now)
        raise SessionEnded
    refresh.blacklist()
    refresh.set_jti()
    refresh.set_exp()
    refresh.set_iat()
    if session is not None:
        # The new access token carries the session's latest activity: web processes judge
        # idleness from it without asking Redis.
        refresh["sla"] = int(session.last_active)
    _cap_expiry(refresh, started)
    refresh.outstand()
    events.token_refreshed(user_id=user_id, sid=sid, ip=ip, user_agent=user_agent)
    return TokenPair(access=str(refresh.access_token), refresh=str(refresh), sid=sid)


def token_verify(*, raw_token: str) -> None:
    """Valid signature, not expired, not blacklisted, and its session still live."""
    try:
        token = UntypedToken(raw_token)
    except TokenError as exc:
        raise InvalidToken(str(exc)) from exc
    if token.get("token_type") == "refresh":
        try:
            RefreshToken(raw_token)  # also checks the blacklist
        except TokenError as exc:
            raise InvalidToken(str(exc)) from exc
    sid, started = token.get("sid"), token.get("sst")
    if not isinstance(sid, str) or not isinstance(started, int | float):
        raise InvalidToken("Token has no session.")
    _session_check(sid=sid, started=started, now=clock.now())


def logout(*, raw_refresh: str) -> None:
    """Blacklist the refresh token and end its session: the access token dies at once too."""
    refresh, sid, _, _ = _refresh_claims(raw_refresh)
    refresh.blacklist()
    tracker.end(sid=sid, reason=EndReason.LOGOUT, ended_at=clock.now())


# --- ending sessions -----------------------------------------------------------------------


def session_end(*, sid: str, reason: EndReason, actor_id: int | None = None) -> bool:
    """End one session now. True if this call ended it."""
    return tracker.end(sid=sid, reason=reason, ended_at=clock.now(), actor_id=actor_id) == 1


def session_revoke_own(*, user_id: int, sid: str) -> bool:
    """A user ends one of their own sessions; False if it is not theirs or not live."""
    if sid not in livesessions.user_sids(user_id):
        return False
    return session_end(sid=sid, reason=EndReason.REVOKED, actor_id=user_id)


def sessions_revoke_others(*, user_id: int, current_sid: str) -> int:
    sids = [sid for sid in livesessions.user_sids(user_id) if sid != current_sid]
    return sum(session_end(sid=sid, reason=EndReason.REVOKED, actor_id=user_id) for sid in sids)


def sessions_end_for_user(*, user_id: int, reason: EndReason, actor_id: int | None = None) -> int:
    try:
        sids = livesessions.user_sids(user_id)
    except REDIS_UNAVAILABLE:
        logger.error("could not end the sessions of a user: redis unavailable")
        return 0
    return sum(session_end(sid=sid, reason=reason, actor_id=actor_id) for sid in sids)


def sessions_end_all(*, actor_id: int | None = None, batch: int = 500) -> int:
    """End every live session (staff action). Bounded by the count when it started."""
    client = get_redis()
    remaining = client.zcard(keys.started_index())
    ended = 0
    while remaining > 0:
        sids = [sid.decode() for sid in client.zrange(keys.started_index(), 0, batch - 1)]
        if not sids:
            break
        ended += sum(
            session_end(sid=sid, reason=EndReason.REVOKED, actor_id=actor_id) for sid in sids
        )
        remaining -= len(sids)
    return ended


def sessions_expire_due(*, now: float | None = None, batch: int = 500) -> dict[str, int]:
    """End sessions past their idle or absolute timeout and trim the indexes.

    Run by beat every 30 s: the request path checks timeouts too, but a client that never
    comes back must still see its session end, on time, with the right reason.
    """
    conf = get_settings()
    now = clock.now() if now is None else now
    client = get_redis()
    counts = {"idle_timeout": 0, "absolute_timeout": 0}

    def end_all(index: str, cutoff: float, reason: EndReason) -> None:
        while True:
            due = client.zrangebyscore(
                index, "-inf", f"({cutoff}", start=0, num=batch, withscores=True
            )
            if not due:
                return
            pipe = client.pipeline(transaction=False)
            for sid, score in due:
                if reason is EndReason.IDLE_TIMEOUT:
                    livesessions.end(
                        sid=sid.decode(),
                        reason=reason,
                        ended_at=now,
                        idle_timeout=conf.IDLE_TIMEOUT,
                        client=pipe,
                    )
                else:
                    livesessions.end(
                        sid=sid.decode(),
                        reason=reason,
                        ended_at=score + conf.ABSOLUTE_TIMEOUT,
                        client=pipe,
                    )
            results = pipe.execute()
            orphans = [
                sid for (sid, _), result in zip(due, results, strict=True) if result in (-1, 0)
            ]
            if orphans:  # index entries whose session is gone or already ended: drop them
                client.zrem(keys.active_index(), *orphans)
                client.zrem(keys.started_index(), *orphans)
            counts[str(reason)] += sum(1 for result in results if result == 1)
            if len(due) < batch:
                return

    end_all(keys.active_index(), now - conf.IDLE_TIMEOUT, EndReason.IDLE_TIMEOUT)
    end_all(keys.started_index(), now - conf.ABSOLUTE_TIMEOUT, EndReason.ABSOLUTE_TIMEOUT)
    keep = settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"].total_seconds() + 120
    client.zremrangebyscore(keys.ended_index(), "-inf", now - keep)
    return counts


def user_security_changed(*, user_id: int, password_changed: bool, deactivated: bool) -> int:
    """A password change or a deactivation ends every session of the user."""
    if deactivated:
        return sessions_end_for_user(user_id=user_id, reason=EndReason.USER_DISABLED)
    if password_changed:
        return sessions_end_for_user(user_id=user_id, reason=EndReason.PASSWORD_CHANGED)
    return 0


# --- lock-outs -----------------------------------------------------------------------------


def lockout_lift(*, key: str, actor_id: int) -> bool:
    """An admin lifts a lock; its lockout_lifted event names them (and the refusals)."""
    return throttling.lockout_lift(key=key, actor_id=actor_id, now=clock.now()) is not None


def lockout_periods_close() -> int:
    """Report the lock periods that have ended (beat, every 30 s)."""
    return throttling.lockout_periods_close(now=clock.now())


# --- admin account -------------------------------------------------------------------------


@transaction.atomic
def admin_ensure(*, username: str, password: str | None = None) -> AdminAccount:
    """Create a superuser unless one exists; never a well-known password."""
    existing = User.objects.filter(is_superuser=True).order_by("id").first()
    if existing is not None:
        return AdminAccount(username=existing.username, created=False, password=None)
    password = password or secrets.token_urlsafe(18)
    User.objects.create_superuser(username=username, email="", password=password)
    return AdminAccount(username=username, created=True, password=password)
