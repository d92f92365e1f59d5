from django.core.management.base import BaseCommand

from analytics import rollups


class Command(BaseCommand):
    help = (
        "Recompute the rollups the sync keeps (analytics_user_day, analytics_user_stats) from the "
        "audit sessions, "
        "for disaster recovery. Safe while the sync runs."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--check",
            action="store_true",
            help="Compare the kept rollup with a recomputation (exit 1 if they differ).",
        )

    def handle(self, *args, **options):
        if options["check"]:
            found = rollups.differences()
            for day in sorted({row[1] for row in found})[:30]:
                self.stdout.write(f"  differs on {day}")
            users = rollups.stats_differences()
            for user_id, kept, recomputed in users[:30]:
                self.stdout.write(f"  user {user_id}: kept {kept}, recomputed {recomputed}")
            if found:
                self.stderr.write(f"analytics_user_day differs in {len(found)} (user, day) rows")
            if users:
                self.stderr.write(f"analytics_user_stats differs for {len(users)} users")
            if found or users:
                raise SystemExit(1)
            self.stdout.write("analytics_user_day equals its recomputation")
            self.stdout.write("analytics_user_stats equals its recomputation")
            return
        result = rollups.rebuild()
        self.stdout.write(f"rebuilt analytics_user_day: {result.rows} (user, day) rows")
        self.stdout.write(f"rebuilt analytics_user_stats: {result.users} users")
