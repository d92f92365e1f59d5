"""Bad input, written by hand: malformed tokens, bodies and headers against every endpoint.

Huge bodies (several MB), binary garbage, invalid UTF-8, unicode (RTL, emoji, zero-width),
JSON of the wrong shape or nested too deep for Python's decoder, SQL and script injection in
usernames, passwords and headers, very long headers, malformed Content-Type, forged and
mangled JWTs. Whatever the request: no 5xx and no traceback in the body. And the injected
strings, once they have gone through failed logins and the sync, render escaped in the admin.
"""

import hashlib
import json
import warnings

import jwt
import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from accounts.tests.helpers import login
from accounts.tracking import tracker
from analytics import services as analytics_services
from audit import services as audit_services

pytestmark = pytest.mark.django_db

ENDPOINTS = {
    "/api/auth/token/": ["POST"],
    "/api/auth/token/refresh/": ["POST"],
    "/api/auth/token/verify/": ["POST"],
    "/api/auth/logout/": ["POST"],
    "/api/me/": ["GET"],
    "/api/sessions/": ["GET"],
    "/api/sessions/revoke-others/": ["POST"],
    "/api/sessions/0000000000000000000000000000000/": ["DELETE"],
    "/api/schema/": ["GET"],
    "/api/docs/": ["GET"],
    "/healthz": ["GET"],
    "/metrics": ["GET"],
    "/admin/login/": ["GET", "POST"],
}
WRONG_METHODS = ["PUT", "PATCH", "OPTIONS", "HEAD"]
TRACEBACK_MARKERS = (b"Traceback", b'File "/', b"most recent call last")

SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
INJECTIONS = [
    "' OR '1'='1' --",
    "admin'--",
    '"; DROP TABLE accounts_user; --',
    "1; SELECT pg_sleep(10)",
    SCRIPT,
    IMG,
    "{{7*7}}{% debug %}",
    "../../../../etc/passwd",
    "\r\nSet-Cookie: injected=1",
]
UNICODE = [
    "\u202eevil\u202c",  # right-to-left override
    "emoji 😀🔥👩‍👩‍👧",
    "zero\u200bwidth\u200d\ufeff",
    "مرحبا שלום",
    "\ud800",  # a lone surrogate (JSON can carry it; UTF-8 cannot)
    "nul\x00byte",
]


def bodies() -> list[tuple[str, bytes, str]]:
    """(name, body, content type)."""
    garbage = b"".join(hashlib.sha256(bytes([n])).digest() for n in range(128))  # 4 KiB
    out = [
        ("empty", b"", "application/json"),
        ("null", b"null", "application/json"),
        ("list", b'["username", "password"]', "application/json"),
        ("number", b"12345", "application/json"),
        ("string", b'"refresh"', "application/json"),
        ("bool", b"true", "application/json"),
        (
            "numbers for strings",
            b'{"username": 1, "password": 2.5, "refresh": 3, "token": 4}',
            "application/json",
        ),
        (
            "lists for strings",
            b'{"username": ["a"], "password": ["b"], "refresh": [], "token": [1]}',
            "application/json",
        ),
        (
            "objects for strings",
            b'{"username": {"a": {"b": [null]}}, "password": {}, "refresh": {"x": 1}, "token": {}}',
            "application/json",
        ),
        (
            "nulls",
            b'{"username": null, "password": null, "refresh": null, "token": null}',
            "application/json",
        ),
        (
            "huge number",
            b'{"username": 1' + b"0" * 5000 + b', "password": 1e999}',
            "application/json",
        ),
        ("NaN", b'{"username": NaN, "password": Infinity}', "application/json"),
        (
            "duplicate keys",
            b'{"username": "a", "username": ["b"], "password": "c"}',
            "application/json",
        ),
        ("deep list", b"[" * 100_000 + b"]" * 100_000, "application/json"),
        ("deep object", b'{"refresh":' * 50_000 + b"1" + b"}" * 50_000, "application/json"),
        ("truncated", b'{"username": "a", "pass', "application/json"),
        ("binary", garbage, "application/json"),
        ("binary octet", garbage, "application/octet-stream"),
        (
            "invalid utf-8",
            b'{"username": "\xff\xfe\xc3\x28", "password": "\xe2\x82"}',
            "application/json",
        ),
        ("utf-16 body", '{"username": "a", "password": "b"}'.encode("utf-16"), "application/json"),
        (
            "bogus charset",
            b'{"username": "a", "password": "b"}',
            "application/json; charset=no-such-codec",
        ),
        (
            "latin-1 charset",
            b'{"username": "\xe9t\xe9", "password": "b"}',
            "application/json; charset=latin-1",
        ),
        ("form", b"username=a&password=b", "application/x-www-form-urlencoded"),
        ("multipart no boundary", b"--x\r\n", "multipart/form-data"),
        ("multipart garbage", garbage, "multipart/form-data; boundary=zz"),
        ("content type garbage", b"{}", "\x00\xff;;;==;charset"),
        ("content type empty", b'{"username": "a"}', ""),
        ("content type huge", b"{}", "application/json; " + "a=b; " * 2000),
        (
            "huge json",
            b'{"username": "' + b"a" * 5_000_000 + b'", "password": "x"}',
            "application/json",
        ),
        ("huge binary", garbage * 750, "application/octet-stream"),  # 3 MiB
    ]
    for text in INJECTIONS + UNICODE:
        credentials = {"username": text, "password": text, "refresh": text, "token": text}
        out.append((f"text {text!r}", json.dumps(credentials).encode(), "application/json"))
    long_credentials = {"username": "u" * 100_000, "password": "p" * 100_000}
    out.append(("long username", json.dumps(long_credentials).encode(), "application/json"))
    return out


BODIES_FOR_GET = {
    "binary",
    "invalid utf-8",
    "deep list",
    "content type garbage",
    "huge json",
    "huge binary",
    "text '<script>alert(1)</script>'",
}


def forged_tokens(valid: str) -> dict[str, str]:
    key = django_settings.SIMPLE_JWT["SIGNING_KEY"]

    def signed(**claims):
        token = AccessToken()
        token["user_id"] = 1
        token["sid"] = "f" * 27
        token["sst"] = token["iat"]
        token["sla"] = token["iat"]
        for name, value in claims.items():
            if value is None:
                del token[name]
            else:
                token[name] = value
        return str(token)

    header, payload, signature = valid.split(".")
    with warnings.catch_warnings():  # the key is short for SHA-512: beside the point here
        warnings.simplefilter("ignore")
        hs512 = jwt.encode({"user_id": 1, "sid": "x", "token_type": "access"}, key, "HS512")
    refresh = RefreshToken()
    refresh["user_id"], refresh["sid"], refresh["sst"] = 1, "e" * 27, refresh["iat"]
    return {
        "empty": "",
        "bearer only": "Bearer",
        "bearer space": "Bearer ",
        "three parts": "Bearer a b c",
        "basic": "Basic dXNlcjpwYXNzd29yZA==",
        "lowercase scheme": f"bearer {valid}",
        "bad signature": f"Bearer {header}.{payload}.{signature[::-1]}",
        "payload swapped": f"Bearer {header}.{payload[:-4]}AAAA.{signature}",
        "not base64": "Bearer !!!.@@@.###",
        "huge": "Bearer " + "A" * 100_000,
        "invalid utf-8 (latin-1 bytes)": "Bearer \xff\xfe\xc3(",
        "unicode": "Bearer \u202e😀\u200b",
        "nul": "Bearer abc\x00def",
        "injection": f"Bearer {SCRIPT}' OR 1=1 --",
        "alg none": "Bearer "
        + jwt.encode({"user_id": 1, "sid": "x", "sst": 1, "token_type": "access"}, None, "none"),
        "alg HS512": f"Bearer {hs512}",
        "refresh as access": f"Bearer {refresh}",
        "no sid": f"Bearer {signed(sid=None)}",
        "sid not a string": f"Bearer {signed(sid=12345)}",
        "sid too long": f"Bearer {signed(sid='s' * 5000)}",
        "sid unicode": f"Bearer {signed(sid=UNICODE[0] + UNICODE[1])}",
        "user id a string": f"Bearer {signed(user_id='1 OR 1=1')}",
        "user id a bool": f"Bearer {signed(user_id=True)}",
        "user id huge": f"Bearer {signed(user_id=10**30)}",
        "user id unknown": f"Bearer {signed(user_id=987654321)}",
        "no session start": f"Bearer {signed(sst=None)}",
        "session start a string": f"Bearer {signed(sst='yesterday')}",
        "session start huge": f"Bearer {signed(sst=1e308)}",
        "session start negative": f"Bearer {signed(sst=-1e18)}",
        "activity a list": f"Bearer {signed(sla=[1, 2])}",
        "expired": f"Bearer {signed(exp=1)}",
        "exp a string": f"Bearer {signed(exp='never')}",
        "no token type": f"Bearer {signed(token_type=None)}",
        "no jti": f"Bearer {signed(jti=None)}",
    }


# Signed with our key and well-formed enough to pass (forging them takes the key): a user id
# or session start nobody issued, no jti, a unicode sid. Every other token must get a 401
# from the endpoints that need one.
ACCEPTABLE_WITH_THE_KEY = {
    "user id unknown",
    "user id huge",
    "session start huge",
    "no jti",
    "sid unicode",
}


def headers_corpus() -> dict[str, dict[str, str]]:
    garbage_latin1 = bytes(range(128, 256)).decode("latin-1")
    corpus = {
        "user agent huge": {"HTTP_USER_AGENT": "Mozilla/5.0 " + "x" * 100_000},
        "user agent invalid utf-8": {"HTTP_USER_AGENT": garbage_latin1},
        "forwarded garbage": {
            "HTTP_X_FORWARDED_FOR": "not-an-ip, <script>, 999.1.1.1, fe80::1%eth0"
        },
        "forwarded huge": {"HTTP_X_FORWARDED_FOR": ", ".join(["10.0.0.1"] * 5000)},
        "forwarded empty hops": {"HTTP_X_FORWARDED_FOR": "," * 1000},
        "forwarded ports": {"HTTP_X_FORWARDED_FOR": "[2001:db8::1]:443, 203.0.113.7:51234"},
        "remote addr garbage": {"REMOTE_ADDR": "<script>"},
        "cookie garbage": {"HTTP_COOKIE": f"sessionid={SCRIPT}; csrftoken=\xff\xfe; =; ;;"},
        "accept garbage": {"HTTP_ACCEPT": "application/xml;q=NaN, */*;q=-1, text/html;level=\xff"},
        "accept language huge": {"HTTP_ACCEPT_LANGUAGE": "en-US," * 20_000},
        "host garbage": {"HTTP_HOST": "evil.example:99999"},
        "long header name": {"HTTP_X_" + "A" * 10_000: "1"},
    }
    for text in INJECTIONS + UNICODE:
        corpus[f"user agent {text!r}"] = {"HTTP_USER_AGENT": text}
    return corpus


def check(response, what: str, failures: list) -> None:
    body = response.content if not response.streaming else b"".join(response.streaming_content)
    if response.status_code >= 500 or any(marker in body for marker in TRACEBACK_MARKERS):
        failures.append(f"{what}: {response.status_code} {body[:200]!r}")


@pytest.fixture
def valid_token(django_user_model, password):
    django_user_model.objects.create_user(username="target", password=password)
    response = login(APIClient(), "target", password)
    assert response.status_code == 200
    return response.json()["access"]


@pytest.fixture
def raw_client():
    """A test client that hands back a 500 as a response instead of raising its exception."""
    return Client(raise_request_exception=False)


def test_malformed_bodies_against_every_endpoint(raw_client, valid_token, settings):
    settings.TRUSTED_PROXIES = "1"
    failures: list[str] = []
    auth = {"HTTP_AUTHORIZATION": f"Bearer {valid_token}"}
    sent = 0
    for name, body, content_type in bodies():
        for path, methods in ENDPOINTS.items():
            if methods == ["GET"]:  # reads no body: a sample of them, also POSTed
                if name not in BODIES_FOR_GET:
                    continue
                methods = ["GET", "POST"]
            for method in methods:
                for extra in ({}, auth) if len(body) < 100_000 else (auth,):
                    response = raw_client.generic(method, path, body, content_type, **extra)
                    check(response, f"{method} {path} body {name}", failures)
                    sent += 1
    assert failures == [], "\n".join(failures)
    assert sent > 700


def test_malformed_tokens_and_headers_against_every_endpoint(raw_client, valid_token, settings):
    settings.TRUSTED_PROXIES = "1"
    failures: list[str] = []
    tokens = forged_tokens(valid_token)
    must_reject = set(tokens) - ACCEPTABLE_WITH_THE_KEY
    for name, header in tokens.items():
        for path, methods in ENDPOINTS.items():
            for method in methods:
                response = raw_client.generic(
                    method, path, b"{}", "application/json", HTTP_AUTHORIZATION=header
                )
                check(response, f"{method} {path} Authorization {name}", failures)
                protected = path.startswith(("/api/me", "/api/sessions"))
                if protected and name in must_reject and response.status_code != 401:
                    failures.append(f"{method} {path} Authorization {name}: not a 401")
    corpus = headers_corpus()
    for name, headers in corpus.items():
        for path, methods in ENDPOINTS.items():
            for method in methods:
                response = raw_client.generic(
                    method, path, b'{"username": "x"}', "application/json", **headers
                )
                check(response, f"{method} {path} headers {name}", failures)
    everything = {name: value for headers in corpus.values() for name, value in headers.items()}
    for path in ENDPOINTS:
        for method in WRONG_METHODS:
            for name, headers in {"none": {}, "all garbage": everything}.items():
                response = raw_client.generic(method, path, b"{}", "application/json", **headers)
                check(response, f"{method} {path} headers {name}", failures)
    auth = {"HTTP_AUTHORIZATION": f"Bearer {valid_token}"}
    for sid in ["%00", "%3Cscript%3E", "a" * 5000, "%F0%9F%98%80", "..%2F..%2F", "%FF%FE"]:
        response = raw_client.delete(f"/api/sessions/{sid}/", **auth)
        check(response, f"DELETE /api/sessions/{sid[:20]}/", failures)
    for query in ["?limit=-1&offset=abc", "?format=xml", "?" + "a=b&" * 5000, "?%FF=%FE"]:
        response = raw_client.get(f"/api/sessions/{query}", **auth)
        check(response, f"GET /api/sessions/{query[:30]}", failures)
    assert failures == [], "\n".join(failures)


def test_injected_strings_render_escaped_in_the_admin(
    client, django_user_model, password, settings
):
    analyst = django_user_model.objects.create_user(
        username="analyst", password=password, is_staff=True
    )
    analyst.user_permissions.add(Permission.objects.get(codename="view_analytics"))
    api = APIClient()
    # Five failures lock the (username, IP) pair: the username shows among the lock-outs too.
    for _ in range(5):
        response = login(api, SCRIPT, "' OR '1'='1", HTTP_USER_AGENT=IMG)
        assert response.status_code == 401
    sql_agent = "Mozilla'; DROP TABLE audit_event; --"
    response = login(api, "'; DROP TABLE accounts_user; --", "x", HTTP_USER_AGENT=sql_agent)
    assert response.status_code == 401
    tracker.flush()
    result = audit_services.sync_run()
    assert result.events == 7  # 6 failed logins and the lock-out
    # 6 failures and 2 usernames are under the suspicious-IP report's default threshold.
    settings.SESSIONHUB = {**settings.SESSIONHUB, "SUSPICIOUS_IP_MIN_FAILURES": 1}
    analytics_services.thresholds_sync()

    assert client.login(username="analyst", password=password)
    escaped_script = "&lt;script&gt;alert(1)&lt;/script&gt;"
    escaped_img = "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"
    pages = {
        "events": (reverse("admin:audit_auditevent_changelist"), [escaped_script]),
        "security": (reverse("admin:analytics_security"), [escaped_script, escaped_img]),
        "suspicious IPs": (reverse("admin:analytics_suspiciousip_changelist"), [escaped_img]),
        "events searched": (reverse("admin:audit_auditevent_changelist"), [escaped_script]),
    }
    for name, (url, escaped) in pages.items():
        response = client.get(url, {"q": SCRIPT} if name == "events searched" else {})
        assert response.status_code == 200, name
        html = response.content.decode()
        assert SCRIPT not in html and "<img src=x" not in html, name
        for text in escaped:
            assert text in html, (name, text)
    assert (
        "Mozilla&#x27;; DROP TABLE audit_event; --"
        in client.get(reverse("admin:analytics_suspiciousip_changelist")).content.decode()
    )
