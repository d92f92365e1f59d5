import pytest

from accounts.tracking import tracker
from sessionhub import clock

from .helpers import FrozenClock, login


@pytest.fixture(autouse=True)
def fresh_tracker():
    tracker.reset()
    yield tracker
    tracker.flush()
    tracker.reset()


@pytest.fixture
def frozen_clock(monkeypatch):
    frozen = FrozenClock(clock.now())
    monkeypatch.setattr(clock, "now", frozen)
    return frozen


@pytest.fixture
def tokens(api_client, user, password):
    response = login(api_client, user.username, password)
    assert response.status_code == 200, response.content
    return response.json()
