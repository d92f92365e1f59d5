#!/usr/bin/env bash
# Everything `make run` and `make test` need, on a fresh Debian/Ubuntu machine or an old one.
# Usage: scripts/setup.sh run|test|bench     A second run is quick and changes nothing already set up.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-run}
say() { printf '==> %s\n' "$*"; }
die() { printf '\nsetup: %s\n' "$*" >&2; exit 1; }

apt_install() {  # apt_install <what> <package...>
  local what=$1; shift
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "Installing $what (apt-get install $*)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    die "$what is missing. Install it with:  sudo apt-get install -y $*"
  fi
}

# 1. Python 3.11+ and a virtualenv with the pinned requirements.
PYTHON=${PYTHON:-}
if [ -z "$PYTHON" ]; then
  for candidate in python3.11 python3.12 python3.13 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
      PYTHON=$candidate; break
    fi
  done
fi
[ -n "$PYTHON" ] || apt_install "Python 3.11+" python3 python3-venv
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  say "Creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv 2>/dev/null || { apt_install "python3-venv" python3-venv; "$PYTHON" -m venv .venv; }
fi
requirements=requirements.txt
[ "$mode" != run ] && requirements=requirements-dev.txt
stamp=.venv/.installed-$(cat requirements.txt "$requirements" | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  say "Installing $requirements into .venv"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$requirements"
  touch "$stamp"
fi

# 2. Debian tools the test suite drives for real (Prometheus' promtool, exporters, Chromium);
#    the benchmarks also need wrk.
if [ "$mode" != run ]; then
  missing=()
  command -v promtool >/dev/null || missing+=(prometheus)
  command -v amtool >/dev/null || missing+=(prometheus-alertmanager)
  command -v prometheus-redis-exporter >/dev/null || missing+=(prometheus-redis-exporter)
  command -v prometheus-postgres-exporter >/dev/null || missing+=(prometheus-postgres-exporter)
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  command -v docker-compose >/dev/null || missing+=(docker-compose)
  [ "$mode" = bench ] && { command -v wrk >/dev/null || missing+=(wrk); }
  [ ${#missing[@]} -eq 0 ] || apt_install "test tools" "${missing[@]}"
fi

# 3. PostgreSQL and Redis: the configured ones, the standard local ones, or private ones.
.venv/bin/python scripts/services.py

# 4. For `make run`: the production settings module (as in docker-compose) with secrets
#    generated once for this machine, then schema, static files, an admin and demo data.
if [ "$mode" = run ]; then
  secrets=.local/secrets.env
  if [ ! -f "$secrets" ]; then
    say "Generating local secrets in $secrets (kept, never committed)"
    umask 077
    {
      echo "SECRET_KEY=$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(50))')"
      echo "JWT_SIGNING_KEY=$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(48))')"
      echo "METRICS_TOKEN=$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(32))')"
    } > "$secrets"
  fi
  # shellcheck disable=SC1090
  . "$secrets"
  # shellcheck disable=SC1091
  . .local/services.env
  port=${PORT:-8000}
  # What the three processes run with (honcho reads this file instead of any .env).
  {
    echo "DJANGO_SETTINGS_MODULE=sessionhub.settings.production"
    echo "DATABASE_URL=$DATABASE_URL"
    echo "REDIS_URL=$REDIS_URL"
    echo "SECRET_KEY=${SECRET_KEY}"
    echo "JWT_SIGNING_KEY=${JWT_SIGNING_KEY}"
    echo "METRICS_TOKEN=${METRICS_TOKEN}"
    echo "ALLOWED_HOSTS=${ALLOWED_HOSTS:-localhost,127.0.0.1,[::1]}"
    echo "CSRF_TRUSTED_ORIGINS=${CSRF_TRUSTED_ORIGINS:-http://127.0.0.1:$port,http://localhost:$port}"
    echo "SECURE_COOKIES=${SECURE_COOKIES:-false}"
    echo "TRUSTED_PROXIES=${TRUSTED_PROXIES:-}"
    echo "GUNICORN_BIND=${GUNICORN_BIND:-127.0.0.1:$port}"
    echo "CELERY_BEAT_SCHEDULE_FILE=.local/celerybeat-schedule"
    echo "PYTHONUNBUFFERED=1"
  } > .local/run.env
  chmod 600 .local/run.env
  set -a
  # shellcheck disable=SC1091
  . .local/run.env
  set +a
  say "Applying migrations"
  .venv/bin/python manage.py migrate --no-input -v 0
  .venv/bin/python manage.py collectstatic --no-input -v 0
  .venv/bin/python manage.py ensure_admin
  .venv/bin/python manage.py seed_demo --if-empty
fi
