from django.core.management.base import BaseCommand, CommandError

from audit import services
from audit.models import SyncQuarantine


class Command(BaseCommand):
    help = (
        "List the rows the audit sync set aside (PostgreSQL cannot take them as they are), "
        "retry them with the current code, or discard them for good."
    )

    def add_arguments(self, parser):
        action = parser.add_mutually_exclusive_group()
        action.add_argument(
            "--retry",
            nargs="*",
            type=int,
            metavar="ID",
            help="write these rows again (no id: every quarantined row)",
        )
        action.add_argument(
            "--discard", nargs="+", type=int, metavar="ID", help="give these rows up for good"
        )

    def handle(self, *args, retry, discard, **options):
        if discard:
            deleted = services.quarantine_discard(ids=discard)
            self.stdout.write(f"discarded {deleted:,} of {len(discard):,} rows")
            return
        if retry is not None:
            result = services.quarantine_retry(ids=retry or None)
            if result.skipped:
                raise CommandError("a sync is running; try again in a few seconds")
            self.stdout.write(
                f"retried: {result.landed:,} written, {result.refused:,} refused again"
            )
            return
        rows = SyncQuarantine.objects.order_by("id")
        for row in rows.iterator():
            seen = f"{row.last_seen:%Y-%m-%d %H:%M:%S}"
            self.stdout.write(
                f"{row.id}\t{row.kind}\t{row.key}\trefused {row.attempts} times, last {seen}"
                f"\t{row.error[:200]!r}"
            )
        self.stdout.write(f"{rows.count():,} rows in quarantine")
