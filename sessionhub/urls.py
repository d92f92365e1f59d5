from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from observability.healthz import healthz
from observability.views import metrics

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/analytics/", include("analytics.api.urls")),
    path("api/", include("accounts.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # GET only: its HTML renderer has no template for an OPTIONS answer (that was a 500).
    path(
        "api/docs/",
        SpectacularSwaggerView.as_view(url_name="schema", http_method_names=["get", "head"]),
        name="docs",
    ),
    path("healthz", healthz, name="healthz"),
    # Browsers ask for /favicon.ico where a page names no icon (the admin's pages do).
    path(
        "favicon.ico",
        RedirectView.as_view(url=f"/{settings.STATIC_URL.strip('/')}/analytics/favicon.svg"),
        name="favicon",
    ),
    path("metrics", metrics, name="metrics"),
]
