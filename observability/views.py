import os

from django.http import HttpResponse, HttpResponseForbidden
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)

from .metrics import SessionhubCollector
from .metrics_access import metrics_allowed

_collector = SessionhubCollector()


class _SingleProcessRegistry(CollectorRegistry):
    """The default registry (runserver, tests) with our collector alongside it."""

    def collect(self):
        yield from REGISTRY.collect()
        yield from _collector.collect()


_single_process = _SingleProcessRegistry(auto_describe=False)


def _registry() -> CollectorRegistry:
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return _single_process
    # Under gunicorn: django-prometheus' per-worker files merged into one view, plus ours.
    registry = CollectorRegistry(auto_describe=False)
    multiprocess.MultiProcessCollector(registry)
    registry.register(_collector)
    return registry


def metrics(request):
    if not metrics_allowed(request.META):
        return HttpResponseForbidden("metrics are not public\n", content_type="text/plain")
    return HttpResponse(generate_latest(_registry()), content_type=CONTENT_TYPE_LATEST)
