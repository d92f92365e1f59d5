# The two commands a newcomer needs: `make run` and `make test`. Both set up what is missing.
SHELL := /bin/bash
export PATH := $(CURDIR)/.venv/bin:$(PATH)
export DJANGO_SETTINGS_MODULE ?= sessionhub.settings.local
PORT ?= 8000

.PHONY: run test lint bench setup-run setup-test

run:
	@scripts/setup.sh run
	@echo "==> Starting web, Celery worker and Celery beat (Ctrl-C stops all)"
	@echo "    Admin:   http://127.0.0.1:$(PORT)/admin/"
	@echo "    API:     http://127.0.0.1:$(PORT)/api/docs/"
	@echo "    Health:  http://127.0.0.1:$(PORT)/healthz"
	@echo "    Metrics: http://127.0.0.1:$(PORT)/metrics (loopback, or Bearer METRICS_TOKEN from .local/secrets.env)"
	@exec honcho start --procfile Procfile --env .local/run.env

test:
	@scripts/setup.sh test
	@echo "==> ruff check"
	@ruff check .
	@ruff format --check --quiet . || (echo "Run 'make lint' to format." && exit 1)
	@echo "==> lint-imports (the layers, see README: Development)"
	@lint-imports --no-cache
	@echo "==> mypy"
	@DJANGO_SETTINGS_MODULE=sessionhub.settings.test mypy
	@echo "==> makemigrations --check"
	@. .local/services.env && DJANGO_SETTINGS_MODULE=sessionhub.settings.test python manage.py makemigrations --check --dry-run
	@echo "==> pytest"
	@. .local/services.env && DJANGO_SETTINGS_MODULE=sessionhub.settings.test python -m pytest $(PYTEST_ARGS)
	@echo "==> smoke: make run from requirements.txt alone"
	@. .local/services.env && python scripts/smoke_run.py

bench:
	@scripts/setup.sh bench
	@echo "==> benchmarks (60 s per case; BENCH_ARGS='--only tracking --duration 10' for a quick run)"
	@. .local/services.env && python -m bench.runner $(BENCH_ARGS)

lint:
	@scripts/setup.sh test >/dev/null
	ruff format .
	ruff check --fix .
