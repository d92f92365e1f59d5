import pytest

from .helpers import login


@pytest.fixture
def tokens(api_client, user, password):
    response = login(api_client, user.username, password)
    assert response.status_code == 200, response.content
    return response.json()
