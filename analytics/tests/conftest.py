"""Fixtures of the analytics tests: the ground-truth workload and staff readers."""

import pytest
from django.contrib.auth.models import Permission
from django.db import connection

from audit.tests.workload import NOW, build_world


def staff(django_user_model, name: str, *perms: str):
    user = django_user_model.objects.create_user(
        username=name, password="pw-" + name, is_staff=True
    )
    for perm in perms:
        user.user_permissions.add(Permission.objects.get(codename=perm))
    return user


@pytest.fixture
def world(django_user_model, password, frozen_clock):
    users = build_world(django_user_model, password, frozen_clock)
    with connection.cursor() as cursor:
        cursor.execute(f"SET sessionhub.now = '{NOW}+00:00'")
    from analytics import services

    services.analytics_refresh()
    yield users
    with connection.cursor() as cursor:
        cursor.execute("RESET sessionhub.now")


@pytest.fixture
def analyst(django_user_model):
    return staff(django_user_model, "analyst", "view_analytics")


@pytest.fixture
def manager(django_user_model):
    return staff(django_user_model, "manager", "view_analytics", "manage_sessions")
