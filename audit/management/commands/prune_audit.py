import re
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError

from audit import services
from core.conf import get_settings

UNITS = {"d": "days", "h": "hours", "w": "weeks"}


def parse_age(text: str) -> timedelta:
    match = re.fullmatch(r"(\d+)([dhw])", text.strip())
    if not match:
        raise CommandError(
            f"--older-than takes a number and a unit (d, h, w), e.g. 90d; got {text!r}"
        )
    return timedelta(**{UNITS[match[2]]: int(match[1])})


class Command(BaseCommand):
    help = (
        "Delete audit events and ended sessions older than the retention (whole monthly event "
        "partitions dropped, the rest in batches), and the sessions of deleted users."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--older-than",
            default=None,
            help="Age such as 90d, 12w or 36h (default: AUDIT_RETENTION_DAYS).",
        )
        parser.add_argument("--batch-size", type=int, default=10_000)

    def handle(self, *args, older_than, batch_size, **options):
        age = (
            parse_age(older_than)
            if older_than
            else timedelta(days=get_settings().AUDIT_RETENTION_DAYS)
        )

        def progress(deleted: int) -> None:
            self.stdout.write(f"  deleted {deleted:,} rows so far", ending="\r")
            self.stdout.flush()

        result = services.audit_prune(older_than=age, batch=batch_size, progress=progress)
        self.stdout.write(
            f"\npruned {result.events:,} events and {result.sessions:,} ended sessions "
            f"older than {age.days} days"
            + (f", and {result.orphans:,} rows of deleted users" if result.orphans else "")
        )
        if result.partitions:
            self.stdout.write(
                f"dropped {len(result.partitions)} monthly event partitions whole: "
                + ", ".join(result.partitions)
            )
