from django.apps import AppConfig


class AnalyticsConfig(AppConfig):
    name = "analytics"
    verbose_name = "Analytics"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from audit.signals import sessions_synced

        from .rollups import fold_after_sync

        post_migrate.connect(_thresholds_after_migrate, sender=self)
        sessions_synced.connect(fold_after_sync, dispatch_uid="analytics.rollups.fold")


def _thresholds_after_migrate(**kwargs) -> None:
    from .services import thresholds_sync

    thresholds_sync()
