"""Fixtures of the compose tests: the compose file as docker-compose resolves it."""

import pytest

from .helpers import raw_compose, resolved_compose


@pytest.fixture(scope="session")
def compose(tmp_path_factory) -> dict:
    """docker-compose.yml after `docker-compose config` with the dummy .env."""
    return resolved_compose(tmp_path_factory.mktemp("compose-config"))


@pytest.fixture(scope="session")
def services(compose) -> dict[str, dict]:
    return compose["services"]


@pytest.fixture
def raw() -> dict:
    """docker-compose.yml as written (YAML anchors resolved, variables not)."""
    return raw_compose()
