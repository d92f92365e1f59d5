from django.core.management.base import BaseCommand

from analytics import services


class Command(BaseCommand):
    help = "Refresh the analytics rollups (materialized views) now, concurrently with readers."

    def handle(self, *args, **options):
        def progress(name: str, seconds: float) -> None:
            self.stdout.write(f"  refreshed {name} in {seconds:.2f} s")

        result = services.analytics_refresh(progress=progress)
        self.stdout.write(
            f"refreshed {len(result.seconds)} rollups in {sum(result.seconds.values()):.2f} s"
        )
