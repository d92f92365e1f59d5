"""Import every module the running system loads, with the runtime requirements only.

A package that the code (or a library's chosen extra, such as kombu's Redis transport) needs but
`requirements.txt` does not declare fails here, named, instead of crashing a worker at start-up.
Run with the interpreter of a virtualenv built from `requirements.txt` alone: the `make test`
smoke does (scripts/smoke_run.py), and so does the Dockerfile's build.

    python scripts/check_runtime_imports.py

What is imported: every module of the apps (tests excepted, they need the dev requirements), the
WSGI application with its middleware, every installed app, the Celery app with its broker
transport and result backend resolved from the settings, and gunicorn's config with its worker
class. Exit status 1 lists every module that failed and the package it missed.
"""

import importlib
import os
import pkgutil
import runpy
import sys
import traceback
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP_PACKAGES = ("core", "accounts", "audit", "analytics", "reports", "observability", "sessionhub")
# Throwaway values so the production settings load; nothing connects anywhere.
PRODUCTION_PLACEHOLDERS = {
    "DJANGO_SETTINGS_MODULE": "sessionhub.settings.production",
    "SECRET_KEY": "import-check-only-not-a-secret",
    "JWT_SIGNING_KEY": "import-check-only-not-a-secret-either-0123456789",
    "ALLOWED_HOSTS": "import-check.invalid",
    "METRICS_TOKEN": "import-check-only-not-a-secret",
}


def app_modules() -> list[str]:
    names = []
    for package in APP_PACKAGES:
        names.append(package)
        path = [str(ROOT / package)]
        for module in pkgutil.walk_packages(path, prefix=f"{package}."):
            parts = module.name.split(".")
            if "tests" in parts or parts[-1] == "conftest":
                continue
            names.append(module.name)
    return names


def check(label: str, action, failures: list[str]) -> None:
    try:
        action()
    except ModuleNotFoundError as error:
        failures.append(f"{label}: missing package for module '{error.name}'")
    except Exception as error:  # any import-time crash is a finding to report
        detail = traceback.format_exception_only(error)[-1].strip()
        failures.append(f"{label}: {detail}")


def celery_plugins() -> None:
    from celery.app.backends import by_url
    from kombu.transport import resolve_transport

    from sessionhub.celery import app

    broker = app.conf.broker_url
    resolve_transport(broker.split("://", 1)[0])
    by_url(app.conf.result_backend)
    # The broker's own client library (redis-py for redis://, py-amqp for amqp://).
    importlib.import_module(app.connection_for_write().transport.__module__)


def gunicorn_config() -> None:
    from gunicorn.config import Config

    values = runpy.run_path(str(ROOT / "sessionhub" / "gunicorn.py"))
    config = Config()
    for name, value in values.items():
        if name in config.settings:
            config.set(name, value)
    config.worker_class  # noqa: B018 - resolving the class imports the worker module


def main() -> int:
    for name, value in PRODUCTION_PLACEHOLDERS.items():
        os.environ.setdefault(name, value)
    sys.path.insert(0, str(ROOT))
    warnings.filterwarnings("ignore", "No directory at")  # whitenoise: static files not collected
    failures: list[str] = []

    import django

    check("django.setup()", django.setup, failures)
    if failures:
        print("\n".join(failures), file=sys.stderr)
        return 1
    from django.apps import apps

    modules = app_modules()
    for name in modules:
        check(name, lambda name=name: importlib.import_module(name), failures)
    for config in apps.get_app_configs():
        check(config.name, lambda config=config: importlib.import_module(config.name), failures)
    check("Celery broker transport and result backend", celery_plugins, failures)
    check("gunicorn config and worker class", gunicorn_config, failures)
    check(
        "honcho (make run's process manager)", lambda: importlib.import_module("honcho"), failures
    )

    if failures:
        print(f"{len(failures)} import failure(s) with the runtime requirements:", file=sys.stderr)
        for failure in failures:
            print(f"  {failure}", file=sys.stderr)
        return 1
    print(f"runtime imports: {len(modules)} app modules, Celery transport and backend, gunicorn ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
