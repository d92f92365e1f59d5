"""Reads about live sessions (Redis)."""

from dataclasses import dataclass

from core import clock
from core.rediskeys import keys

from . import livesessions


@dataclass(frozen=True)
class SessionView:
    session: livesessions.LiveSession
    status: livesessions.SessionStatus
    current: bool


def sessions_for_user(*, user_id: int, current_sid: str | None = None) -> list[SessionView]:
    now = clock.now()
    sessions = livesessions.get_many(livesessions.user_sids(user_id), keys.shard_of(user_id))
    sessions.sort(key=lambda session: session.last_active, reverse=True)
    return [
        SessionView(
            session,
            livesessions.session_status(session.last_active, now),
            session.sid == current_sid,
        )
        for session in sessions
        if not session.is_ended
    ]
