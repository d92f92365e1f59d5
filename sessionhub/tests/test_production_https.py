"""Production over HTTPS: HSTS, secure cookies, and a proxy's X-Forwarded-Proto only if declared.

The production settings are loaded in a process of their own (they read the environment once)
and asked for the admin's login page the way a browser would: over HTTPS, over plain HTTP, and
over HTTP claiming "X-Forwarded-Proto: https".
"""

import json
import os
import subprocess
import sys

from django.conf import settings

GOOD = {
    "SECRET_KEY": "s" * 50,
    "JWT_SIGNING_KEY": "j" * 40,
    "ALLOWED_HOSTS": "sessionhub.example.com",
}
SCRIPT = """
import json
import django
django.setup()
from django.test import Client

seen = {}
for name, extra in [
    ("https", {"secure": True}),
    ("http", {}),
    ("forwarded", {"HTTP_X_FORWARDED_PROTO": "https"}),
]:
    response = Client().get("/admin/login/", HTTP_HOST="sessionhub.example.com", **extra)
    cookie = response.cookies.get("csrftoken")
    seen[name] = {
        "status": response.status_code,
        "hsts": response.get("Strict-Transport-Security"),
        "secure_cookie": bool(cookie and cookie["secure"]),
    }
print(json.dumps(seen))
"""
VARIABLES = {
    "DEBUG",
    "TRUSTED_PROXIES",
    "SECURE_COOKIES",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
}


def production_answers(**env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in {*GOOD, *VARIABLES}}
    clean["DJANGO_SETTINGS_MODULE"] = "sessionhub.settings.production"
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env={**clean, **GOOD, **env},
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_https_answers_carry_hsts_and_secure_cookies():
    seen = production_answers()
    assert seen["https"] == {
        "status": 200,
        "hsts": "max-age=31536000; includeSubDomains",
        "secure_cookie": True,
    }
    assert seen["http"]["hsts"] is None  # browsers ignore HSTS over HTTP; Django sends none
    assert seen["http"]["secure_cookie"]  # the cookie is never sent back over plain HTTP


def test_x_forwarded_proto_is_believed_only_behind_a_declared_proxy():
    # No proxy declared: a client's own header does not make plain HTTP "secure".
    assert production_answers()["forwarded"]["hsts"] is None
    behind_proxy = production_answers(TRUSTED_PROXIES="1")
    assert behind_proxy["forwarded"]["hsts"] == "max-age=31536000; includeSubDomains"
    assert behind_proxy["http"]["hsts"] is None


def test_hsts_is_configurable():
    seen = production_answers(
        SECURE_HSTS_SECONDS="600", SECURE_HSTS_INCLUDE_SUBDOMAINS="false", SECURE_HSTS_PRELOAD="1"
    )
    assert seen["https"]["hsts"] == "max-age=600; preload"
