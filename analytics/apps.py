from django.apps import AppConfig


class AnalyticsConfig(AppConfig):
    name = "analytics"
    verbose_name = "Analytics"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        post_migrate.connect(_thresholds_after_migrate, sender=self)


def _thresholds_after_migrate(**kwargs) -> None:
    from .services import thresholds_sync

    thresholds_sync()
