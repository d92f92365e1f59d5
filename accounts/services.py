import secrets
from dataclasses import dataclass

from django.db import transaction

from accounts.models import User


@dataclass(frozen=True)
class AdminAccount:
    username: str
    created: bool
    password: str | None


@transaction.atomic
def admin_ensure(*, username: str, password: str | None = None) -> AdminAccount:
    """Create a superuser unless one exists; never a well-known password."""
    existing = User.objects.filter(is_superuser=True).order_by("id").first()
    if existing is not None:
        return AdminAccount(username=existing.username, created=False, password=None)
    password = password or secrets.token_urlsafe(18)
    User.objects.create_superuser(username=username, email="", password=password)
    return AdminAccount(username=username, created=True, password=password)
