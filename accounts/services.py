"""Writes about accounts and their sessions. Views, admin, tasks and commands call these."""

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.db.models import Q, QuerySet
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import RefreshToken, UntypedToken
from rest_framework_simplejwt.utils import datetime_from_epoch

from core import clock, lua
from core.conf import get_settings
from core.redis import REDIS_UNAVAILABLE, each_shard, get_redis
from core.rediskeys import keys

from . import events, livesessions, throttling
from .events import EndReason, FailureReason
from .models import SessionEndRequest, User
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


class ForeignSession(InvalidToken):
    """The token's session belongs to another user."""

    default_detail: Any = "Token does not belong to its session."
    default_code = "token_not_valid"


class _UnclaimedRefreshToken(RefreshToken):
    """A refresh token checked for signature, expiry and type, but not yet against the
    blacklist: the rotation claims it atomically instead (simplejwt checks the blacklist and
    writes it in two steps, so two concurrent refreshes could both pass)."""

    def check_blacklist(self) -> None:
        return None


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
        assert failure is not None  # every refusal names its reason
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
        for evicted in livesessions.start(**session, username=user.get_username()):
            tracker.mark_ended(evicted)  # the others hear it by pub/sub
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


def _session_check(
    *, sid: str, user_id: int | None, started: float, now: float
) -> livesessions.LiveSession | None:
    """Refuse a refresh/verify for a session that has ended, timing it out if it is due, or
    that belongs to another user than the token's.

    Returns the live session as Redis has it (None when Redis is away or does not know it).
    """
    conf = get_settings()
    if now - started >= conf.ABSOLUTE_TIMEOUT:
        tracker.end(
            sid=sid,
            reason=EndReason.ABSOLUTE_TIMEOUT,
            ended_at=started + conf.ABSOLUTE_TIMEOUT,
            user_id=user_id,
        )
        raise SessionEnded
    try:
        shard = livesessions.shard_for(sid, user_id)
        session = livesessions.get(sid, shard)
        ended_recently = get_redis().zscore(keys.ended_index(shard), sid) is not None
    except REDIS_UNAVAILABLE:
        logger.warning("session check skipped: redis unavailable")
        return None
    if session is not None and user_id is not None and session.user_id != user_id:
        raise ForeignSession
    if ended_recently or (session is not None and session.is_ended):
        raise SessionEnded
    if session is not None and now - session.last_active >= conf.IDLE_TIMEOUT:
        result = tracker.end(
            sid=sid,
            reason=EndReason.IDLE_TIMEOUT,
            ended_at=now,
            idle_timeout=conf.IDLE_TIMEOUT,
            shard=shard,
        )
        if result != 2:
            raise SessionEnded
    return session


def _refresh_claims(
    raw: str, token_class: type[RefreshToken] = RefreshToken
) -> tuple[RefreshToken, str, int, int]:
    try:
        refresh = token_class(raw)  # type: ignore[arg-type]  # simplejwt types it Token; signature, expiry, type (and the blacklist, by default)
    except TokenError as exc:
        raise InvalidToken(str(exc)) from exc
    sid, user_id, started = refresh.get("sid"), refresh.get("user_id"), refresh.get("sst")
    if not isinstance(sid, str) or not isinstance(user_id, int) or not isinstance(started, int):
        raise InvalidToken("Token has no session.")
    return refresh, sid, user_id, started


def _claim(refresh: RefreshToken, raw: str, user_id: int) -> bool:
    """Blacklist the refresh token; False if it was already: exactly one caller wins.

    The unique blacklist row arbitrates: a concurrent claim waits for the winner's commit,
    then fails.
    """
    outstanding, _ = OutstandingToken.objects.get_or_create(
        jti=refresh["jti"],
        defaults={
            "user_id": user_id,
            "created_at": datetime_from_epoch(refresh["iat"]),
            "token": raw,
            "expires_at": datetime_from_epoch(refresh["exp"]),
        },
    )
    try:
        with transaction.atomic():
            BlacklistedToken.objects.create(token=outstanding)
    except IntegrityError:
        return False
    return True


def token_refresh(*, raw_refresh: str, ip: str, user_agent: str) -> TokenPair:
    """Rotate a refresh token within the same session (same sid); the old one is blacklisted.

    Rotation is atomic: of concurrent refreshes with one token, exactly one gets a new pair. A
    token that was already rotated coming back means two parties hold it (the client and a
    thief, who cannot be told apart): the session ends — with it the pair issued at the
    rotation — and a security event says so. The end is recorded in PostgreSQL with the
    rotation's outcome, so it holds even while Redis is away.
    """
    refresh, sid, user_id, started = _refresh_claims(raw_refresh, _UnclaimedRefreshToken)
    now = clock.now()
    if session_end_requested(user_id=user_id, sid=sid):
        raise SessionEnded
    session = _session_check(sid=sid, user_id=user_id, started=started, now=now)
    if not User.objects.filter(pk=user_id, is_active=True).exists():
        tracker.end(sid=sid, reason=EndReason.USER_DISABLED, ended_at=now, user_id=user_id)
        raise SessionEnded
    with transaction.atomic():
        claimed = _claim(refresh, raw_refresh, user_id)
        if claimed:
            refresh.set_jti()
            refresh.set_exp()
            refresh.set_iat()
            if session is not None:
                # The new access token carries the session's latest activity: web processes
                # judge idleness from it without asking Redis.
                refresh["sla"] = int(session.last_active)
            _cap_expiry(refresh, started)
            refresh.outstand()
        else:
            session_end_request_record(user_id=user_id, sid=sid, reason=EndReason.REFRESH_REUSE)
    if not claimed:
        tracker.mark_ended(sid)
        session_ends_apply(user_id=user_id)
        events.refresh_token_reused(user_id=user_id, sid=sid, ip=ip, user_agent=user_agent)
        raise SessionEnded
    events.token_refreshed(user_id=user_id, sid=sid, ip=ip, user_agent=user_agent)
    return TokenPair(access=str(refresh.access_token), refresh=str(refresh), sid=sid)


def token_verify(*, raw_token: str) -> None:
    """Valid signature, not expired, not blacklisted, and its session still live."""
    try:
        token = UntypedToken(raw_token)  # type: ignore[arg-type]  # simplejwt: a str is fine
    except TokenError as exc:
        raise InvalidToken(str(exc)) from exc
    if token.get("token_type") == "refresh":
        try:
            RefreshToken(raw_token)  # type: ignore[arg-type]  # also checks the blacklist
        except TokenError as exc:
            raise InvalidToken(str(exc)) from exc
    sid, user_id, started = token.get("sid"), token.get("user_id"), token.get("sst")
    if (
        not isinstance(sid, str)
        or not isinstance(user_id, int)
        or not isinstance(started, int | float)
    ):
        raise InvalidToken("Token has no session.")
    if session_end_requested(user_id=user_id, sid=sid):
        raise SessionEnded
    _session_check(sid=sid, user_id=user_id, started=started, now=clock.now())


def logout(*, raw_refresh: str) -> None:
    """Blacklist the refresh token and end its session: the access token dies at once too."""
    refresh, sid, user_id, _ = _refresh_claims(raw_refresh)
    try:
        session = livesessions.get(sid, keys.shard_of(user_id))
    except REDIS_UNAVAILABLE:
        session = None  # the end is deferred by the tracker; the blacklist holds meanwhile
    if session is not None and session.user_id != user_id:
        raise ForeignSession
    refresh.blacklist()
    tracker.end(sid=sid, reason=EndReason.LOGOUT, ended_at=clock.now(), user_id=user_id)


# --- ending sessions -----------------------------------------------------------------------


def session_end(
    *,
    sid: str,
    reason: EndReason,
    actor_id: int | None = None,
    user_id: int | None = None,
    shard: int | None = None,
) -> bool:
    """End one session now. True if this call ended it. Its owner (`user_id`) or `shard`
    names its shard; without either, the shards are asked (livesessions.locate)."""
    return (
        tracker.end(
            sid=sid,
            reason=reason,
            ended_at=clock.now(),
            actor_id=actor_id,
            user_id=user_id,
            shard=shard,
        )
        == 1
    )


def session_revoke_own(*, user_id: int, sid: str) -> bool:
    """A user ends one of their own sessions; False if it is not theirs or not live."""
    if sid not in livesessions.user_sids(user_id):
        return False
    return session_end(sid=sid, reason=EndReason.REVOKED, actor_id=user_id, user_id=user_id)


def sessions_revoke_others(*, user_id: int, current_sid: str) -> int:
    sids = [sid for sid in livesessions.user_sids(user_id) if sid != current_sid]
    return sum(
        session_end(sid=sid, reason=EndReason.REVOKED, actor_id=user_id, user_id=user_id)
        for sid in sids
    )


def sessions_end_for_user(*, user_id: int, reason: EndReason, actor_id: int | None = None) -> int:
    """End every session of a user (admin action). Recorded first, so it holds even while
    Redis is away: applied there now, or by the beat job once Redis answers. Returns the
    number of sessions ended now."""
    session_end_request_record(user_id=user_id, reason=reason, actor_id=actor_id)
    return session_ends_apply(user_id=user_id)


def sessions_end_all(*, actor_id: int | None = None, batch: int = 500) -> int:
    """End every live session (staff action), shard by shard. Bounded by the count when it
    started."""
    client = get_redis()
    ended = 0
    for shard in keys.shards():
        remaining = client.zcard(keys.started_index(shard))
        while remaining > 0:
            members = cast(list[bytes], client.zrange(keys.started_index(shard), 0, batch - 1))
            sids = [member.decode() for member in members]
            if not sids:
                break
            ended += sum(
                session_end(sid=sid, reason=EndReason.REVOKED, actor_id=actor_id, shard=shard)
                for sid in sids
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

    def end_all(shard: int, index: str, cutoff: float, reason: EndReason) -> None:
        while True:
            due = cast(
                list[tuple[bytes, float]],
                client.zrangebyscore(
                    index, "-inf", f"({cutoff}", start=0, num=batch, withscores=True
                ),
            )
            if not due:
                return
            calls = [
                livesessions.end_call(
                    sid=sid.decode(),
                    reason=reason,
                    ended_at=now,
                    idle_timeout=conf.IDLE_TIMEOUT,
                    shard=shard,
                )
                if reason is EndReason.IDLE_TIMEOUT
                else livesessions.end_call(
                    sid=sid.decode(),
                    reason=reason,
                    ended_at=score + conf.ABSOLUTE_TIMEOUT,
                    shard=shard,
                )
                for sid, score in due
            ]
            results = lua.run(calls)
            orphans = [
                sid for (sid, _), result in zip(due, results, strict=True) if result in (-1, 0)
            ]
            if orphans:  # index entries whose session is gone or already ended: drop them
                client.zrem(keys.active_index(shard), *orphans)
                client.zrem(keys.started_index(shard), *orphans)
            counts[str(reason)] += sum(1 for result in results if result == 1)
            if len(due) < batch:
                return

    keep = settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"].total_seconds() + 120
    idle_cutoff, absolute_cutoff = now - conf.IDLE_TIMEOUT, now - conf.ABSOLUTE_TIMEOUT

    def expire(shard: int) -> None:
        end_all(shard, keys.active_index(shard), idle_cutoff, EndReason.IDLE_TIMEOUT)
        end_all(shard, keys.started_index(shard), absolute_cutoff, EndReason.ABSOLUTE_TIMEOUT)
        client.zremrangebyscore(keys.ended_index(shard), "-inf", now - keep)

    each_shard(expire, "session expiry")
    return counts


# --- ends recorded in PostgreSQL (the outbox) ----------------------------------------------


def session_end_request_record(
    *, user_id: int, reason: EndReason, sid: str = "", actor_id: int | None = None
) -> SessionEndRequest:
    """Record that sessions must end, in the caller's transaction: one session (`sid`), or
    every session of the user opened up to now."""
    return SessionEndRequest.objects.create(
        user_id=user_id,
        sid=sid,
        reason=reason,
        actor_id=actor_id,
        requested_at=_wall_datetime(livesessions.now_ms()),
    )


def session_end_requested(*, user_id: int, sid: str) -> bool:
    """Whether an end recorded in PostgreSQL names this session (applied in Redis or not)."""
    created = _wall_datetime(livesessions.sid_created_ms(sid))
    return (
        SessionEndRequest.objects.filter(user_id=user_id)
        .filter(Q(sid=sid) | Q(sid="", requested_at__gte=created))
        .exists()
    )


def session_ends_apply_after_commit(*, user_id: int) -> None:
    transaction.on_commit(lambda: session_ends_apply(user_id=user_id))


def session_ends_apply(*, user_id: int | None = None, batch: int = 1000, batches: int = 20) -> int:
    """Apply recorded ends in Redis; returns the number of sessions ended.

    Pending ends first, then, for an access-token lifetime, those applied already: a web
    process may bring into Redis a session it opened or rebuilt during an outage, after the
    first pass. (Ends for deactivated and deleted users are left to `sessions_reconcile`,
    which finds such sessions whatever their origin.) Redis away: the ends stay pending and
    the next run tries again. Exactly once per session, so runs may overlap. Records older than
    the absolute timeout are dropped: no session they name can still be alive.
    """
    now_ms = livesessions.now_ms()
    conf = get_settings()
    with transaction.atomic():
        expired = SessionEndRequest.objects.filter(
            requested_at__lt=_wall_datetime(now_ms - (conf.ABSOLUTE_TIMEOUT + 60) * 1000)
        )
        SessionEndRequest.objects.filter(id__in=_unlocked_ids(expired)).delete()
    access_lifetime = settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"].total_seconds()
    recent = _wall_datetime(now_ms - int((access_lifetime + 120) * 1000))
    scopes = [
        Q(applied_at__isnull=True),
        Q(applied_at__isnull=False, requested_at__gte=recent) & ~Q(reason=EndReason.USER_DISABLED),
    ]
    ended = 0
    for scope in scopes:
        rows = SessionEndRequest.objects.filter(scope)
        if user_id is not None:
            rows = rows.filter(user_id=user_id)
        after = 0
        for _ in range(batches):
            chunk = list(rows.filter(id__gt=after).order_by("id")[:batch])
            if not chunk:
                break
            try:
                ended += _session_ends_apply_chunk(chunk)
            except REDIS_UNAVAILABLE:
                logger.warning("recorded session ends wait for redis")
                return ended
            pending = [row.id for row in chunk if row.applied_at is None]
            if pending:
                with transaction.atomic():
                    unmarked = SessionEndRequest.objects.filter(
                        id__in=pending, applied_at__isnull=True
                    )
                    SessionEndRequest.objects.filter(id__in=_unlocked_ids(unmarked)).update(
                        applied_at=_wall_datetime(now_ms)
                    )
            after = chunk[-1].id
    return ended


def _unlocked_ids(rows: QuerySet[SessionEndRequest]) -> list[int]:
    """Lock `rows` in id order, skipping those another applier holds (it marks them itself).

    Concurrent appliers (e.g. every loser of a refresh race) updating overlapping sets in
    whatever order a scan yields deadlocked; locking in one order and skipping cannot.
    """
    return list(
        rows.order_by("id").select_for_update(skip_locked=True).values_list("id", flat=True)
    )


def _session_ends_apply_chunk(rows: list[SessionEndRequest]) -> int:
    client = get_redis()
    per_user = [row for row in rows if not row.sid]
    pipe = client.pipeline(transaction=False)
    for row in per_user:
        pipe.smembers(keys.user_sessions(row.user_id))
    members = dict(zip((row.id for row in per_user), pipe.execute(), strict=True))
    targets: dict[str, SessionEndRequest] = {}  # the first request naming a session wins
    # A session's owner names its shard (a request for another user's sid ends nothing).
    for row in rows:
        if row.sid:
            targets.setdefault(row.sid, row)
            continue
        before_ms = int(row.requested_at.timestamp() * 1000)
        for member in sorted(members[row.id]):
            sid = member.decode()
            if livesessions.sid_created_ms(sid) <= before_ms:
                targets.setdefault(sid, row)
    if not targets:
        return 0
    now = clock.now()
    results = lua.run(
        [
            livesessions.end_call(
                sid=sid,
                reason=EndReason(row.reason),
                ended_at=now,
                actor_id=row.actor_id,
                shard=keys.shard_of(row.user_id),
            )
            for sid, row in targets.items()
        ]
    )
    for sid, result in zip(targets, results, strict=True):
        if result in (0, 1):
            tracker.mark_ended(sid)
    return sum(1 for result in results if result == 1)


def _wall_datetime(ms: int) -> datetime:
    """Milliseconds of the clock session ids are made with, as a datetime."""
    return clock.to_datetime(ms / 1000)


def sessions_reconcile(*, batch: int = 1000) -> int:
    """End the live sessions of users that are inactive or no longer exist; returns how many.

    Every path that disables or removes a user is recorded when it happens (see User), but a
    session can still reach Redis afterwards — opened by a web process during a Redis outage
    and flushed later, or rebuilt from a token after Redis lost its data. This walks every live
    session by rank in the start index (no KEYS, no SCAN), a batch at a time: one script call
    for the batch's sids and users, one query for which of those users are active.
    """
    return sum(each_shard(lambda shard: _sessions_reconcile_shard(shard, batch), "reconcile"))


def _sessions_reconcile_shard(shard: int, batch: int) -> int:
    client = get_redis()
    owners_of = livesessions.script("session_owners")
    ended, offset = 0, 0
    while True:
        flat = owners_of(
            keys=[keys.started_index(shard)],
            args=[keys.session_prefix(shard), offset, batch],
            client=client,
        )
        if not flat:
            return ended
        sids = [sid.decode() for sid in flat[::2]]
        owners = [int(owner) if owner else None for owner in flat[1::2]]
        known = sorted({owner for owner in owners if owner is not None})
        with connection.cursor() as cursor:
            cursor.execute("SELECT id FROM accounts_user WHERE id = ANY(%s) AND is_active", [known])
            active = {row[0] for row in cursor.fetchall()}
        doomed = [
            sid
            for sid, owner in zip(sids, owners, strict=True)
            if owner is not None and owner not in active
        ]
        removed = 0
        if doomed:
            now = clock.now()
            calls = [
                livesessions.end_call(
                    sid=sid, reason=EndReason.USER_DISABLED, ended_at=now, shard=shard
                )
                for sid in doomed
            ]
            for sid, result in zip(doomed, lua.run(calls), strict=True):
                if result == 1:
                    tracker.mark_ended(sid)
                    removed += 1
            ended += removed
        offset += len(sids) - removed  # ended sessions left the index: the ranks moved down
        if len(sids) < batch:
            return ended


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
