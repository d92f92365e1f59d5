"""Reads about live sessions (Redis)."""

from dataclasses import dataclass

from core import clock
from core.conf import get_settings

from . import livesessions


@dataclass(frozen=True)
class SessionView:
    session: livesessions.LiveSession
    status: str
    current: bool


def session_status(last_active: float, now: float) -> str:
    """active_now / recent / idle, by the configured thresholds (one definition)."""
    conf = get_settings()
    age = now - last_active
    if age < conf.ACTIVE_WINDOW:
        return "active_now"
    if age < conf.RECENT_WINDOW:
        return "recent"
    return "idle"


def sessions_for_user(*, user_id: int, current_sid: str | None = None) -> list[SessionView]:
    now = clock.now()
    sessions = livesessions.get_many(livesessions.user_sids(user_id))
    sessions.sort(key=lambda session: session.last_active, reverse=True)
    return [
        SessionView(session, session_status(session.last_active, now), session.sid == current_sid)
        for session in sessions
        if not session.is_ended
    ]


def session_for_user(*, user_id: int, sid: str) -> livesessions.LiveSession | None:
    session = livesessions.get(sid)
    if session is None or session.user_id != user_id:
        return None
    return session
