"""Bounds of the admin's cookie session (OWASP ASVS 3.3.2, level 2): idle and absolute.

Django ends a session SESSION_COOKIE_AGE after its last save and has no idle bound. This
middleware keeps two timestamps in the session — signed in (stamped at the login, by a
`user_logged_in` receiver connected in reports.admin_apps), last seen — and logs the
session out (row deleted, cookie cleared) before any view runs once it has been idle for
ADMIN_SESSION_IDLE_TIMEOUT or signed in for ADMIN_SESSION_ABSOLUTE_TIMEOUT; the admin then asks
for the password again. SESSION_COOKIE_AGE is the absolute bound too, so the browser and the
session table forget a session the middleware never sees again.

"Last seen" is written at most once per TOUCH_INTERVAL, not on every request as
SESSION_SAVE_EVERY_REQUEST would: browsing the admin costs one session UPDATE a minute instead
of one per page and per form post. The price is precision the safe way round: a session can end
up to TOUCH_INTERVAL before its idle timeout, never after. Requests without a signed-in session
(the API's bearer tokens, /healthz, /metrics) never load one, so they cost nothing here.
"""

from collections.abc import Callable

from django.conf import settings
from django.contrib.auth import SESSION_KEY, logout
from django.contrib.sessions.backends.base import SessionBase
from django.http import HttpRequest
from django.http.response import HttpResponseBase

from core import clock
from core.conf import get_settings

SIGNED_IN_AT = "_sessionhub_signed_in_at"
SEEN_AT = "_sessionhub_seen_at"
TOUCH_INTERVAL = 60


class AdminSessionTimeoutMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        # No cookie, no session to bound: the session is not even touched (which would add
        # "Vary: Cookie" to every API answer).
        if settings.SESSION_COOKIE_NAME in request.COOKIES and SESSION_KEY in request.session:
            self._bound(request, request.session)
        return self.get_response(request)

    def _bound(self, request: HttpRequest, session: SessionBase) -> None:
        conf = get_settings()
        now = clock.now()
        signed_in_at = session.get(SIGNED_IN_AT)
        seen_at = session.get(SEEN_AT)
        if signed_in_at is None or seen_at is None:
            # Signed in before these bounds existed (a login stamps both): they start now.
            session[SIGNED_IN_AT] = session[SEEN_AT] = now
        elif (
            now - signed_in_at >= conf.ADMIN_SESSION_ABSOLUTE_TIMEOUT
            or now - seen_at >= conf.ADMIN_SESSION_IDLE_TIMEOUT
        ):
            logout(request)
        elif now - seen_at >= TOUCH_INTERVAL:
            session[SEEN_AT] = now


def stamp_sign_in(
    sender: object, request: HttpRequest | None, user: object, **kwargs: object
) -> None:
    """`user_logged_in` receiver: the clocks start with the login, saved with its session."""
    if request is not None and hasattr(request, "session"):
        request.session[SIGNED_IN_AT] = request.session[SEEN_AT] = clock.now()
