"""/bench/<design>/trivial and /bench/<design>/realistic for every design in bench.designs, then
the project's own URLs (the admin, /metrics) for the benchmarks that request those."""

from django.urls import include, path

from .designs import DESIGNS
from .views import RealisticView, TrivialView

urlpatterns = [
    *[
        path(f"bench/{name}/{endpoint}", view.as_view(authentication_classes=[auth]))
        for name, auth in DESIGNS.items()
        for endpoint, view in (("trivial", TrivialView), ("realistic", RealisticView))
    ],
    path("", include("sessionhub.urls")),
]
