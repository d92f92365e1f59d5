import os
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from accounts import services


class Command(BaseCommand):
    help = (
        "Create the admin account if no superuser exists. The password comes from "
        "DJANGO_SUPERUSER_PASSWORD or is generated, printed once and saved to "
        ".local/admin-password (readable by you only)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--username", default=os.environ.get("DJANGO_SUPERUSER_USERNAME", "admin")
        )

    def handle(self, *args, username, **options):
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD") or None
        result = services.admin_ensure(username=username, password=password)
        if not result.created:
            saved = Path(settings.BASE_DIR) / ".local" / "admin-password"
            hint = f" (its generated password is in {saved.relative_to(settings.BASE_DIR)})"
            self.stdout.write(
                f"==> Admin account '{result.username}' exists already"
                f"{hint if saved.exists() else ''}."
            )
            return
        self.stdout.write(self.style.SUCCESS(f"==> Created admin account '{username}'."))
        if password is None:
            secret_file = Path(settings.BASE_DIR) / ".local" / "admin-password"
            secret_file.parent.mkdir(exist_ok=True)
            secret_file.touch(mode=0o600)
            assert result.password is not None  # generated, since none was given
            secret_file.write_text(result.password)
            self.stdout.write(
                f"    password: {result.password}\n"
                f"    (generated; shown once, kept in {secret_file.relative_to(settings.BASE_DIR)})"
            )
