"""The dashboards, written with grafana-foundation-sdk. `python -m grafana.generate` writes them.

`common` is imported first: it loads the SDK with its deprecation notice silenced.
"""

from . import (
    common,  # noqa: F401  (first: see above)
    django_celery,
    postgres,
    redis,
    sessions,
)

# uid -> function building the dashboard model; each is written to grafana/dashboards/<uid>.json
DASHBOARDS = {
    sessions.UID: sessions.build,
    redis.UID: redis.build,
    postgres.UID: postgres.build,
    django_celery.UID: django_celery.build,
}
