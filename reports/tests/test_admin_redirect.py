"""The live sessions' actions go back only to a page of this site (no open redirect)."""

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from accounts.tests.helpers import login
from accounts.tracking import tracker

pytestmark = pytest.mark.django_db

OFF_SITE = [
    "https://evil.example/phish",
    "http://evil.example/phish",
    "//evil.example/phish",
    "/\\evil.example/phish",
    "\\\\evil.example/phish",
    "https:evil.example/phish",
    " https://evil.example/phish",
    "javascript:alert(document.cookie)",
    "https://testserver@evil.example/phish",
]


@pytest.fixture
def manager(django_user_model):
    user = django_user_model.objects.create_user(
        username="manager", password="pw-manager", is_staff=True
    )
    for codename in ("view_analytics", "manage_sessions"):
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return user


@pytest.mark.parametrize("next_url", OFF_SITE)
def test_an_off_site_next_is_not_followed(client, manager, api_client, user, password, next_url):
    login(api_client, user.username, password)
    tracker.flush()
    url = reverse("admin:analytics_live_sessions")
    client.force_login(manager)
    response = client.post(url, {"action": "end_all", "next": next_url})
    assert response.status_code == 302
    assert response["Location"] == url
    assert client.get(url).context["page"].total == 0  # the action itself still ran


def test_a_page_of_the_site_is_followed(client, manager, api_client, user, password):
    login(api_client, user.username, password)
    tracker.flush()
    url = reverse("admin:analytics_live_sessions")
    client.force_login(manager)
    back = f"{url}?status=inactive&order=oldest"
    response = client.post(url, {"action": "end_all", "next": back})
    assert response.status_code == 302 and response["Location"] == back
