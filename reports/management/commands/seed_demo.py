import sys

from django.core.management.base import BaseCommand

from audit.models import AuditSession
from reports import demo


class Command(BaseCommand):
    help = (
        "Replay a realistic workload (power, regular, occasional, idle and never-active users "
        "joining over time, daily rhythms, attacks, and one session ending for each reason) "
        "through the real code paths, so the admin and Grafana have something to show."
    )

    def add_arguments(self, parser):
        parser.add_argument("--users", type=int, default=200)
        parser.add_argument("--days", type=int, default=30)
        parser.add_argument("--seed", type=int, default=1, help="same seed, same workload")
        parser.add_argument(
            "--if-empty", action="store_true", help="do nothing if sessions exist already"
        )

    def handle(self, *args, users, days, seed, if_empty, **options):
        if if_empty and AuditSession.objects.exists():
            self.stdout.write("==> Demo data: the database has sessions already; skipped.")
            return
        if users < 1 or days < 1:
            self.stderr.write("--users and --days must be at least 1")
            sys.exit(2)
        self.stdout.write(f"==> Seeding {users} demo users over {days} days (seed {seed})")
        width = 30

        def progress(done: int, total: int, result) -> None:
            filled = width * done // max(total, 1)
            self.stdout.write(
                f"\r  [{'#' * filled}{'.' * (width - filled)}] {done:,}/{total:,} actions, "
                f"{result.sessions:,} sessions, {result.calls:,} calls",
                ending="",
            )
            self.stdout.flush()

        result = demo.demo_seed(users=users, days=days, seed=seed, progress=progress)
        profiles = ", ".join(f"{n} {name}" for name, n in result.profiles.items())
        self.stdout.write(
            f"\n==> Demo data: {result.users} users ({profiles}), {result.sessions:,} sessions, "
            f"{result.calls:,} API calls, {result.failed_logins:,} failed logins; "
            f"incidents: {', '.join(result.incidents) or 'none'}"
        )
