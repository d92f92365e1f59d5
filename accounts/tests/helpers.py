from rest_framework_simplejwt.tokens import AccessToken

from accounts import livesessions
from accounts.tracking import tracker


class FrozenClock:
    """A clock the test moves by hand; session logic reads it through core.clock.now."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def login(api_client, username, password, **extra):
    return api_client.post(
        "/api/auth/token/", {"username": username, "password": password}, format="json", **extra
    )


def bearer(access: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {access}"}


def sid_of(token: str) -> str:
    return AccessToken(token, verify=False)["sid"]


def live_session(sid: str) -> livesessions.LiveSession | None:
    """The session as Redis has it once this process's pending counts are flushed."""
    assert tracker.flush()
    return livesessions.get(sid)
