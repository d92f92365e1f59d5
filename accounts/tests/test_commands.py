"""ensure_admin: the first admin account, and the file `make run` keeps its password in."""

import io
import json

import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command


@pytest.fixture
def base_dir(settings, tmp_path, monkeypatch):
    monkeypatch.delenv("DJANGO_SUPERUSER_PASSWORD", raising=False)
    settings.BASE_DIR = tmp_path
    return tmp_path


@pytest.mark.django_db
def test_the_saved_password_is_exactly_the_password(base_dir):
    """The README builds a JSON body from `$(cat .local/admin-password)`: nothing but the
    password may be in the file (no username line, no newline)."""
    out = io.StringIO()
    call_command("ensure_admin", stdout=out)
    saved = base_dir / ".local" / "admin-password"
    password = saved.read_text()
    assert password and password == password.strip()
    assert f"password: {password}" in out.getvalue()
    assert json.loads(f'{{"password": "{password}"}}')["password"] == password
    assert authenticate(username="admin", password=password) is not None
    assert saved.stat().st_mode & 0o077 == 0, "readable by its owner only"


@pytest.mark.django_db
def test_a_second_run_changes_nothing_and_points_at_the_file(base_dir):
    call_command("ensure_admin", stdout=io.StringIO())
    first = (base_dir / ".local" / "admin-password").read_text()
    out = io.StringIO()
    call_command("ensure_admin", stdout=out)
    assert "exists already" in out.getvalue()
    assert ".local/admin-password" in out.getvalue()
    assert (base_dir / ".local" / "admin-password").read_text() == first


@pytest.mark.django_db
def test_a_chosen_password_is_used_and_not_written(base_dir, monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "a chosen one, long enough")
    call_command("ensure_admin", stdout=io.StringIO())
    assert authenticate(username="admin", password="a chosen one, long enough") is not None
    assert not (base_dir / ".local" / "admin-password").exists()
