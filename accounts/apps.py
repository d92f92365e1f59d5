from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts and live sessions"

    def ready(self) -> None:
        from . import (
            schema,  # noqa: F401 - registers the OpenAPI authentication scheme
            signals,  # noqa: F401 - connects the receivers
        )
