"""Malformed, forged and misused tokens: always 401, never 500."""

import base64
import json
from datetime import timedelta

import jwt
import pytest
from django.conf import settings
from rest_framework_simplejwt.tokens import AccessToken

from .helpers import bearer

pytestmark = pytest.mark.django_db


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def forged(tokens: dict, **changes) -> str:
    claims = {**AccessToken(tokens["access"]).payload, **changes}
    return jwt.encode(claims, settings.SIMPLE_JWT["SIGNING_KEY"], algorithm="HS256")


def bad_tokens(tokens: dict) -> dict[str, str]:
    access = tokens["access"]
    header, payload, signature = access.split(".")
    claims = AccessToken(access).payload
    expired = AccessToken(access)
    expired.set_exp(lifetime=-timedelta(seconds=1))
    return {
        "garbage": "garbage",
        "empty segments": "..",
        "two segments": f"{header}.{payload}",
        "bad base64": f"{header}.!!!.{signature}",
        "tampered payload": f"{header}.{b64({**claims, 'user_id': 999})}.{signature}",
        "wrong key": jwt.encode(claims, "another-key-of-sufficient-length-0123456789", "HS256"),
        "alg none": f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}.",
        "alg HS512": jwt.encode(claims, settings.SIMPLE_JWT["SIGNING_KEY"] * 2, algorithm="HS512"),
        "refresh as access": tokens["refresh"],
        "expired": str(expired),
        "no sid": forged(tokens, sid=None),
        "sid not a string": forged(tokens, sid=["x"]),
        "user id a string": forged(tokens, user_id="1"),
        "no session start": forged(tokens, sst="yesterday"),
        "huge": "a" * 100_000,
        "unicode": "токен.😀.token",
    }


def test_bad_access_tokens_are_401(api_client, tokens):
    for name, token in bad_tokens(tokens).items():
        response = api_client.get("/api/me/", **bearer(token))
        assert response.status_code == 401, name


@pytest.mark.parametrize(
    "header",
    ["Bearer", "Bearer a b", "Basic dXNlcjpwYXNz", "Bearer \x00", "Bearer \u00e9\u00e8"],
)
def test_garbage_authorization_headers(api_client, header):
    response = api_client.get("/api/me/", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401


def test_bad_refresh_tokens_are_401(api_client, tokens):
    for name, token in bad_tokens(tokens).items():
        if name == "refresh as access":
            token = tokens["access"]  # the mirror case: an access token used to refresh
        response = api_client.post("/api/auth/token/refresh/", {"refresh": token}, format="json")
        assert response.status_code in (400, 401), name
        logout = api_client.post("/api/auth/logout/", {"refresh": token}, format="json")
        assert logout.status_code in (400, 401), name


def test_no_token_is_401_not_403(api_client):
    assert api_client.get("/api/me/").status_code == 401
