import sys

from django.core.management.base import BaseCommand

from audit import services


class Command(BaseCommand):
    help = "Copy changed sessions and new events from Redis to PostgreSQL now (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=None)
        parser.add_argument(
            "--shard", type=int, default=None, help="only this virtual shard (default: all)"
        )

    def handle(self, *args, batch_size, shard, **options):
        interactive = sys.stdout.isatty()

        def progress(kind: str, done: int, total: int) -> None:
            if interactive or done == total:
                end = "\n" if done >= total else "\r"
                self.stdout.write(f"  {kind}: {done:,}/{total:,}", ending=end)
                self.stdout.flush()

        result = services.sync_run(progress=progress, batch_size=batch_size, shard=shard)
        if result.skipped:
            self.stdout.write(self.style.WARNING("Another sync is running; nothing done."))
        self.stdout.write(
            f"synced {result.sessions:,} sessions, {result.events:,} events "
            f"in {result.seconds:.2f} s; backlog left: {result.backlog_sessions:,} sessions, "
            f"{result.backlog_events:,} events"
        )
        if result.lost:
            self.stdout.write(f"closed {result.lost:,} sessions Redis no longer knew as lost")
        held = result.quarantined_sessions + result.quarantined_events
        if held:
            self.stdout.write(
                self.style.WARNING(
                    f"quarantined {result.quarantined_sessions:,} sessions and "
                    f"{result.quarantined_events:,} events PostgreSQL cannot take: see "
                    "`manage.py sync_quarantine`"
                )
            )
