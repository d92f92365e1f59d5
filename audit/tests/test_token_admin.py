"""Staff never read a refresh token in the admin: identifiers only, on every page and search.

simplejwt keeps each refresh token it issues (OutstandingToken.token) and its own admin pages
print it; a live one works at /api/auth/token/refresh/. The tokens are issued through the real
API, then every page of the token admin is read as a superuser.
"""

import pytest
from django.urls import reverse
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from accounts.tests.helpers import login

pytestmark = pytest.mark.django_db


@pytest.fixture
def refresh_tokens(api_client, user, password) -> list[str]:
    """One rotated (blacklisted) refresh token and two live ones."""
    first = login(api_client, user.username, password).json()["refresh"]
    response = api_client.post("/api/auth/token/refresh/", {"refresh": first}, format="json")
    assert response.status_code == 200
    rotated = response.json()["refresh"]
    other = login(api_client, user.username, password).json()["refresh"]
    assert OutstandingToken.objects.count() == 3 and BlacklistedToken.objects.count() == 1
    return [first, rotated, other]


@pytest.fixture
def superuser(django_user_model):
    return django_user_model.objects.create_superuser(
        username="root", email="root@example.com", password="pw-root"
    )


def secrets_of(token: str) -> list[str]:
    """The whole token and its signature: either one is the credential (or its proof)."""
    return [token, token.rsplit(".", 1)[1]]


def pages(refresh_tokens) -> list[tuple[str, dict]]:
    outstanding = list(OutstandingToken.objects.order_by("id"))
    blacklisted = list(BlacklistedToken.objects.order_by("id"))
    found = [
        (reverse("admin:index"), {}),
        (reverse("admin:app_list", args=["token_blacklist"]), {}),
    ]
    for model, objects in (("outstandingtoken", outstanding), ("blacklistedtoken", blacklisted)):
        changelist = reverse(f"admin:token_blacklist_{model}_changelist")
        found += [
            (changelist, {}),
            (changelist, {"q": "alice"}),
            (changelist, {"o": "1"}),
            (changelist, {"o": "-3"}),
        ]
        for obj in objects:
            found += [
                (reverse(f"admin:token_blacklist_{model}_change", args=[obj.pk]), {}),
                (reverse(f"admin:token_blacklist_{model}_history", args=[obj.pk]), {}),
            ]
    for obj in outstanding:
        changelist = reverse("admin:token_blacklist_outstandingtoken_changelist")
        found.append((changelist, {"q": obj.jti}))
    for token in refresh_tokens:
        for model in ("outstandingtoken", "blacklistedtoken"):
            changelist = reverse(f"admin:token_blacklist_{model}_changelist")
            found.append((changelist, {"q": token[-20:]}))
    return found


def test_no_admin_page_shows_a_refresh_token(client, superuser, refresh_tokens):
    client.force_login(superuser)
    for url, params in pages(refresh_tokens):
        response = client.get(url, params)
        assert response.status_code == 200, (url, params)
        html = response.content.decode()
        for token in refresh_tokens:
            for secret in secrets_of(token):
                assert secret not in html, (url, params)

    # The identifiers are there instead.
    html = client.get(reverse("admin:token_blacklist_outstandingtoken_changelist")).content
    for obj in OutstandingToken.objects.all():
        assert obj.jti.encode() in html


def test_searching_the_token_text_finds_nothing(client, superuser, refresh_tokens):
    client.force_login(superuser)
    changelist = reverse("admin:token_blacklist_outstandingtoken_changelist")
    response = client.get(changelist, {"q": refresh_tokens[2][-30:]})
    assert response.context["cl"].result_count == 0


@pytest.mark.parametrize(
    ("model", "lookup"),
    [
        ("outstandingtoken", "token__startswith"),
        ("outstandingtoken", "token"),
        ("outstandingtoken", "token__contains"),
        ("outstandingtoken", "blacklistedtoken__token__token__startswith"),
        ("blacklistedtoken", "token__token__startswith"),
    ],
)
def test_no_filter_on_the_token_text_is_accepted(client, superuser, refresh_tokens, model, lookup):
    """A filter would be an oracle: does some token start with this? — one character a time."""
    client.force_login(superuser)
    changelist = reverse(f"admin:token_blacklist_{model}_changelist")
    response = client.get(changelist, {lookup: refresh_tokens[2][:40]})
    assert response.status_code == 400


def test_the_token_admin_is_read_only(client, superuser, refresh_tokens):
    client.force_login(superuser)
    token = OutstandingToken.objects.filter(blacklistedtoken__isnull=True).first()
    change = reverse("admin:token_blacklist_outstandingtoken_change", args=[token.pk])
    assert client.post(change, {"jti": "x"}).status_code == 403
    blacklisted = BlacklistedToken.objects.get()
    delete = reverse("admin:token_blacklist_blacklistedtoken_delete", args=[blacklisted.pk])
    assert client.get(delete).status_code == 403  # un-blacklisting a rotated token
    assert client.get(reverse("admin:token_blacklist_outstandingtoken_add")).status_code == 403
