"""django-prometheus' per-view HTTP families, bounded whatever the traffic.

As shipped, the per-view families multiply every named URL (the admin alone has six per model)
by every method and, for the latency histogram, by 17 buckets; that histogram even labels the
raw method string, so each made-up method a client sends adds 19 series for good, and the
template family labels the admin's list of candidate templates as Python text. One pass over
every URL of the URLconf with every method made /metrics 2 MB and 16,000 series; with the
relabelling below, 72 KB and 600 (analytics/tests/test_metrics_bounded.py).

Here, in every family labelled by view:

* `view` is the URL name of our own views (the API, health, metrics, schema, docs), `admin`
  for every page of the admin, `analytics_api` for every endpoint of the staff-only reports
  API (the admin's reports again, and as little traffic), and `<unnamed view>` when no URL
  matched;
* `method` is the request's method when the view declares it — GET, POST, PUT, PATCH or DELETE;
  a view that declares none (a function view, the admin) counts GET and POST — else `<other>`:
  HEAD, OPTIONS, a method the view does not serve (refused or not, e.g. answered 401 before
  DRF looks at the method), made-up methods, any request no view matched;
* `templatename` is `admin` for the admin and the template's name for our own pages.

So the families hold at most one label set per (view, declared method) plus one `<other>` per
view, whatever is requested: 30 today. The request counter is taken with the response (the stock
middleware counted in process_view, missing requests a middleware answered first).
"""

from functools import cache

from django_prometheus.middleware import PrometheusAfterMiddleware

ADMIN = "admin"
REPORTS_API = "analytics_api"
UNNAMED = "<unnamed view>"
OTHER = "<other>"
LABELLED_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
UNDECLARED = frozenset({"GET", "POST"})


def view_label(request) -> str:
    match = getattr(request, "resolver_match", None)
    if match is None:
        return UNNAMED
    if ADMIN in match.namespaces:
        return ADMIN
    if REPORTS_API in match.namespaces:
        return REPORTS_API
    return match.view_name or UNNAMED


def method_label(request) -> str:
    match = getattr(request, "resolver_match", None)
    if match is None:
        return OTHER
    if ADMIN in match.namespaces:
        declared = UNDECLARED
    else:
        view_class = getattr(match.func, "view_class", None)
        initkwargs = getattr(match.func, "view_initkwargs", {})
        declared = _declared(view_class, tuple(initkwargs.get("http_method_names", ())))
    return request.method if request.method in declared else OTHER


@cache
def _declared(view_class, names: tuple[str, ...]) -> frozenset[str]:
    if view_class is None:
        return UNDECLARED
    names = names or tuple(view_class.http_method_names)
    return frozenset(n.upper() for n in names if hasattr(view_class, n)) & LABELLED_METHODS


def template_label(request, response) -> str:
    if view_label(request) == ADMIN:
        return ADMIN
    name = getattr(response, "template_name", None)
    if isinstance(name, list | tuple):
        name = name[0] if name else None
    return str(name)


class BoundedPrometheusAfterMiddleware(PrometheusAfterMiddleware):
    """django-prometheus' after-middleware with the label values above."""

    def label_metric(self, metric, request, response=None, **labels):
        if "view" in labels:
            labels["view"] = view_label(request)
            if "method" in labels:
                labels["method"] = method_label(request)
        if "templatename" in labels:
            labels["templatename"] = template_label(request, response)
        return super().label_metric(metric, request, response, **labels)

    def process_view(self, request, view_func, *view_args, **view_kwargs):
        return None  # counted in process_response

    def process_response(self, request, response):
        self.label_metric(
            self.metrics.requests_by_view_transport_method,
            request,
            response,
            view=view_label(request),
            transport=self._transport(request),
            method=method_label(request),
        ).inc()
        return super().process_response(request, response)
