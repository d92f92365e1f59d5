"""/metrics stays small whatever is requested: every URL of the URLconf, every method, any path.

Under gunicorn in multiprocess mode, as in production (the per-worker files are where the
series pile up): every URL pattern is filled with sample values and requested anonymously and
as a signed-in superuser (admin session, and a bearer token for the API), with every HTTP
method; then random paths, ids and made-up methods, which must add no series at all.
"""

import re
import secrets
import uuid

import pytest
import requests
from django.apps import apps
from django.urls import URLResolver, get_resolver
from django.utils.regex_helper import normalize
from prometheus_client.parser import text_string_to_metric_families

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

LIMIT_BYTES = 100_000
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "PROPFIND"]
PASSWORD = "metrics-superuser-password"


def sample_paths() -> list[str]:
    """One or two concrete paths per URL pattern: converters and regex groups filled in."""
    candidates = ["1", "x"]
    fallback = sorted(config.label for config in apps.get_app_configs())

    def pieces(pattern) -> list[str]:
        found = set()
        for template, params in normalize(pattern.regex.pattern):
            for values in (candidates, fallback):
                for value in values if params else [""]:
                    piece = template % dict.fromkeys(params, value)
                    match = pattern.match(piece)
                    if match is not None and match[0] == "":
                        found.add(piece)
                if found:
                    break
        return sorted(found)

    def walk(patterns, prefix: str):
        for entry in patterns:
            for piece in pieces(entry.pattern):
                if isinstance(entry, URLResolver):
                    yield from walk(entry.url_patterns, prefix + piece)
                else:
                    yield prefix + piece

    paths = sorted({*walk(get_resolver().url_patterns, "/"), "/no-such-page/"})
    # Signing out last, so the superuser's other requests are made signed in.
    return sorted(paths, key=lambda path: path.endswith("/logout/"))


def api_view_names() -> set[str]:
    names = set()
    for entry in get_resolver().url_patterns:
        if isinstance(entry, URLResolver):
            if entry.namespace != "admin":
                names.update(p.name for p in entry.url_patterns if p.name)
        elif entry.name:
            names.add(entry.name)
    return names


class Superuser:
    """An admin session (through the login form) and a bearer token, over HTTP."""

    def __init__(self, base: str, username: str) -> None:
        self.base = base
        self.http = requests.Session()
        login_page = self.http.get(f"{base}/admin/login/", timeout=10)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login_page.text)[1]
        signed_in = self.http.post(
            f"{base}/admin/login/",
            data={
                "csrfmiddlewaretoken": token,
                "username": username,
                "password": PASSWORD,
                "next": "/admin/",
            },
            headers={"Referer": f"{base}/admin/login/"},
            allow_redirects=False,
            timeout=10,
        )
        assert signed_in.status_code == 302, signed_in.text[:500]
        pair = requests.post(
            f"{base}/api/auth/token/",
            json={"username": username, "password": PASSWORD},
            timeout=10,
        ).json()
        self.bearer = {"Authorization": f"Bearer {pair['access']}"}

    def request(self, method: str, path: str) -> requests.Response:
        headers = {"X-CSRFToken": self.http.cookies.get("csrftoken", ""), "Referer": self.base}
        if path.startswith("/api/"):
            headers.update(self.bearer)
        return self.http.request(
            method, self.base + path, headers=headers, allow_redirects=False, timeout=30
        )


def anonymous(base: str, method: str, path: str) -> requests.Response:
    return requests.request(method, base + path, allow_redirects=False, timeout=30)


def scrape(base: str) -> tuple[int, dict[str, list]]:
    text = requests.get(f"{base}/metrics", timeout=30).text
    django = {}
    for family in text_string_to_metric_families(text):
        if family.name.startswith("django_"):
            django[family.name] = family.samples
    return len(text.encode()), django


def label_values(families: dict[str, list], label: str) -> set[str]:
    return {
        sample.labels[label]
        for samples in families.values()
        for sample in samples
        if label in sample.labels
    }


def test_metrics_stay_bounded_whatever_is_requested(gunicorn_server, django_user_model):
    django_user_model.objects.create_superuser(
        username="root", email="root@example.com", password=PASSWORD
    )
    gunicorn_server.start()  # its log (a warning per 4xx answer) goes to a file, never blocks
    base = gunicorn_server.url
    paths = sample_paths()
    assert len(paths) > 90  # the admin's pages of every model, the API, health, metrics

    superuser = Superuser(base, "root")
    statuses = {}
    for path in paths:
        for method in ("GET", "POST"):
            statuses[(method, path)] = superuser.request(method, path).status_code
        for method in METHODS:
            statuses[(f"anonymous {method}", path)] = anonymous(base, method, path).status_code
    server_errors = sorted(key for key, status in statuses.items() if status >= 500)
    assert server_errors == []

    size, families = scrape(base)
    series = sum(len(samples) for samples in families.values())
    print(f"/metrics after {len(statuses)} requests: {size} bytes, {series} django_* series")
    assert size < LIMIT_BYTES
    views = label_values(families, "view")
    assert views <= api_view_names() | {"admin", "analytics_api", "<unnamed view>"}, views
    assert "admin" in views
    per_view = {
        name: samples
        for name, samples in families.items()
        if any("view" in sample.labels for sample in samples)
    }
    methods = label_values(per_view, "method")
    assert methods <= {"GET", "POST", "PUT", "PATCH", "DELETE", "<other>"}, methods
    assert label_values(families, "method") <= {*METHODS, "<invalid method>", *methods}
    pairs = {
        (sample.labels["view"], sample.labels.get("method"))
        for samples in per_view.values()
        for sample in samples
    }
    assert len(pairs) <= 40, sorted(pairs)  # one per (view, declared method) and <other>
    assert series < 800
    for samples in families.values():
        for sample in samples:
            for value in sample.labels.values():
                assert "['" not in value and "[]" not in value and "('" not in value, sample

    # More traffic of any shape: unknown paths, ids, made-up methods. No new series.
    for n in range(40):
        junk = secrets.token_hex(6)
        anonymous(base, "GET", f"/{junk}/")
        anonymous(base, f"X{junk.upper()}", "/healthz")
        anonymous(base, "GET", f"/api/sessions/{uuid.uuid4()}/")
        superuser.request("GET", f"/admin/audit/auditevent/{n + 100}/change/")
        superuser.request("GET", f"/admin/{junk}/")
        superuser.request("GET", f"/admin/analytics/users/{n + 100}/")
    again_size, again = scrape(base)
    added = {
        name: {s.name + str(sorted(s.labels.items())) for s in again[name]}
        - {s.name + str(sorted(s.labels.items())) for s in families.get(name, [])}
        for name in again
    }
    assert {name: new for name, new in added.items() if new} == {}
    assert again_size < LIMIT_BYTES
