from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts and live sessions"

    def ready(self) -> None:
        from . import (
            events,
            schema,  # noqa: F401 - registers the OpenAPI authentication scheme
            signals,  # noqa: F401 - connects the receivers
        )
        from .tracking import tracker

        events.deliver_later_with(tracker.defer_event)
