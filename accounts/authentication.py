"""DRF authentication that ties every JWT request to its live session.

Tracking lives here, not in a middleware: Django middleware runs before DRF authenticates a
JWT, so it only ever sees an anonymous user. The request path makes no SQL query: the user is
loaded lazily, only if a view reads more than its id (the session being live already says the
user is valid, because disabling a user or changing a password ends its sessions).
"""

from functools import lru_cache
from typing import TYPE_CHECKING

from django.contrib.auth import get_user_model
from rest_framework.exceptions import AuthenticationFailed
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import InvalidToken

from .clientip import client_ip
from .events import MAX_USER_AGENT, clean_text
from .tracking import Verdict, tracker

if TYPE_CHECKING:
    from .models import User

SESSION_ENDED = "Session has ended; log in again."


@lru_cache(maxsize=4096)
def _clean_user_agent(value: str) -> str:
    """User agents repeat: each distinct one is cleaned once."""
    return clean_text(value, MAX_USER_AGENT)


class SessionUser:
    """The authenticated user, loaded from the database on first use of anything but its id."""

    is_authenticated = True
    is_anonymous = False

    def __init__(self, user_id: int, sid: str) -> None:
        self.id = self.pk = user_id
        self.sid = sid
        self._user: User | None = None

    def get_user(self):
        if self._user is None:
            user = get_user_model()._default_manager.filter(pk=self.id, is_active=True).first()
            if user is None:
                raise AuthenticationFailed(SESSION_ENDED, code="user_inactive")
            self._user = user
        return self._user

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.get_user(), name)

    def __str__(self) -> str:
        return f"user {self.id}"


def session_claims(token) -> tuple[str, int, float, float]:
    """sid, user id, session start and the session's last activity when the token was issued."""
    sid, user_id, started = token.get("sid"), token.get("user_id"), token.get("sst")
    last_active = token.get("sla", started)
    if not isinstance(sid, str) or not sid or len(sid) > 64:
        raise InvalidToken("Token has no session.")
    if not isinstance(user_id, int) or isinstance(user_id, bool):
        raise InvalidToken("Token has no valid user.")
    if not isinstance(started, int | float) or isinstance(started, bool):
        raise InvalidToken("Token has no session start.")
    if not isinstance(last_active, int | float) or isinstance(last_active, bool):
        raise InvalidToken("Token has no valid session activity.")
    return sid, user_id, float(started), float(last_active)


class SessionJWTAuthentication(JWTAuthentication):
    def get_header(self, request):
        try:
            return super().get_header(request)
        except UnicodeEncodeError as exc:  # WSGI headers are latin-1; anything else is garbage
            raise InvalidToken("Authorization header is not valid.") from exc

    def bearer_token(self, request):
        """The request's verified access token, or None when it brings no bearer token."""
        header = self.get_header(request)
        if header is None:
            return None
        raw_token = self.get_raw_token(header)
        if raw_token is None:
            return None
        return self.get_validated_token(raw_token)

    def authenticate(self, request):
        token = self.bearer_token(request)
        if token is None:
            return None
        sid, user_id, started, last_active = session_claims(token)
        verdict = tracker.authorize(
            sid=sid,
            user_id=user_id,
            started_at=started,
            last_active_hint=last_active,
            ip=client_ip(request.META),
            user_agent=_clean_user_agent(request.META.get("HTTP_USER_AGENT", "")),
        )
        if verdict is Verdict.ENDED:
            raise AuthenticationFailed(SESSION_ENDED, code="session_ended")
        return SessionUser(user_id, sid), token
