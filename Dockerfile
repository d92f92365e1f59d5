# sessionhub: one image for the app (gunicorn), the Celery worker, Celery beat and `migrate`.
# docker-compose.yml picks the process with `command:`; the default is the Procfile's web line.

ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# --- builder: wheels for every pinned requirement, installed into a virtualenv ---------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /build
COPY requirements.txt .
RUN pip wheel --wheel-dir /build/wheels --requirement requirements.txt \
    && python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-index --find-links /build/wheels --requirement requirements.txt

# --- runtime ---------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DJANGO_SETTINGS_MODULE=sessionhub.settings.production \
    GUNICORN_BIND=0.0.0.0:8000

RUN groupadd --system --gid 10001 sessionhub \
    && useradd --system --uid 10001 --gid sessionhub --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin sessionhub

COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY . .

# Every app module, the Celery transport and result backend and gunicorn's worker class import
# with the image's packages: a runtime dependency missing from requirements.txt fails the build,
# named, instead of the worker at start-up.
RUN python scripts/check_runtime_imports.py

# Static files are collected into the image (served by whitenoise). The production settings
# refuse to load without secrets, so this one command gets throwaway values: they exist only
# in this RUN step, never in the image's environment. .local/ is where the Procfile's beat
# keeps its schedule (a volume in compose), writable by the app user.
RUN SECRET_KEY=build-only-not-a-secret \
    JWT_SIGNING_KEY=build-only-not-a-secret-either-0123456789 \
    ALLOWED_HOSTS=build.invalid \
    python manage.py collectstatic --no-input -v 0 \
    && mkdir -p /app/.local \
    && chown sessionhub:sessionhub /app/.local

USER 10001:10001
EXPOSE 8000

# /healthz answers 200 when PostgreSQL and Redis both do. It is asked for Host "localhost",
# so ALLOWED_HOSTS must list localhost (docker-compose.yml adds it).
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen(urllib.request.Request('http://127.0.0.1:8000/healthz', headers={'Host': 'localhost'}), timeout=4)"]

# The Procfile's web line.
CMD ["gunicorn", "sessionhub.wsgi", "--config", "sessionhub/gunicorn.py"]
