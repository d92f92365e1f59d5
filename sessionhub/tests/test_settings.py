"""The production settings refuse to start with unsafe configuration, naming the variable."""

import os
import subprocess
import sys

import pytest
from django.conf import settings

GOOD = {
    "SECRET_KEY": "s" * 50,
    "JWT_SIGNING_KEY": "j" * 40,
    "ALLOWED_HOSTS": "sessionhub.example.com",
}


def load_production(env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {*GOOD, "DEBUG"}}
    clean["DJANGO_SETTINGS_MODULE"] = "sessionhub.settings.production"
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env={**clean, **env},
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_starts_with_good_values():
    result = load_production(GOOD)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"DEBUG": "true"}, "DEBUG"),
        ({"SECRET_KEY": ""}, "SECRET_KEY"),
        ({"JWT_SIGNING_KEY": ""}, "JWT_SIGNING_KEY"),
        ({"JWT_SIGNING_KEY": "short-key"}, "JWT_SIGNING_KEY"),
        ({"JWT_SIGNING_KEY": "s" * 50}, "JWT_SIGNING_KEY"),
        ({"ALLOWED_HOSTS": ""}, "ALLOWED_HOSTS"),
    ],
)
def test_production_refuses_unsafe_values(change, named):
    result = load_production({**GOOD, **change})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert named in result.stderr.splitlines()[-1]


def test_unknown_product_setting_is_an_error(settings):
    from django.core.exceptions import ImproperlyConfigured

    from core.conf import get_settings

    settings.SESSIONHUB = {**settings.SESSIONHUB, "IDLE_TIMEOUTT": 5}
    with pytest.raises(ImproperlyConfigured, match="IDLE_TIMEOUTT"):
        get_settings()


def test_signing_key_is_not_the_secret_key():
    assert settings.SIMPLE_JWT["SIGNING_KEY"] != settings.SECRET_KEY
    assert settings.SIMPLE_JWT["ALGORITHM"] == "HS256"
