from django.contrib import admin
from django.template.response import TemplateResponse
from django.urls import path, reverse

REPORT_APPS = {"analytics", "audit"}


class SessionhubAdminSite(admin.AdminSite):
    site_header = "sessionhub"
    site_title = "sessionhub admin"
    index_title = "Overview"
    index_template = "admin/sessionhub_index.html"
    # No public site behind the admin: Django's "View site" link would lead to a 404.
    site_url = None
    # The report index (breadcrumbs, front page) is the navigation: the sidebar repeating it
    # took 300 px of a 1280 px screen from the report tables.
    enable_nav_sidebar = False

    @property
    def login_form(self):  # type: ignore[override]  # a class attribute in Django's AdminSite
        # Imported late: this module loads before the apps' models are ready.
        from accounts.forms import AdminLoginForm

        return AdminLoginForm

    def login(self, request, extra_context=None):
        """The admin's login page; while a lock holds, the same 429 + Retry-After as the API."""
        from accounts import throttling

        response = super().login(request, extra_context)
        form = (getattr(response, "context_data", None) or {}).get("form")
        lockout = getattr(form, "lockout", None)
        if lockout is not None:
            response.status_code = 429
            response["Retry-After"] = str(lockout.retry_after)
            throttling.refusal_response_logged(response)
        return response

    def index(self, request, extra_context=None):
        from . import admin_views

        extra_context = {**(extra_context or {}), **admin_views.overview_context(request)}
        return super().index(request, extra_context)

    def app_index(self, request, app_label, extra_context=None):
        """The analytics and audit pages (the "Analytics" of every report's breadcrumbs) list
        all the reports, not just the models the app happens to hold."""
        if app_label in REPORT_APPS and request.user.has_perm("analytics.view_analytics"):
            context = {
                **self.each_context(request),
                "title": "Reports",
                "subtitle": None,
                "app_list": [_reports_app()],
                "app_label": app_label,
                **(extra_context or {}),
            }
            request.current_app = self.name
            return TemplateResponse(request, "admin/app_index.html", context)
        return super().app_index(request, app_label, extra_context)

    def get_app_list(self, request, app_label=None):
        apps = super().get_app_list(request, app_label)
        if app_label is None and request.user.has_perm("analytics.view_analytics"):
            # The reports replace the raw listing of the analytics and audit models.
            apps = [_reports_app()] + [a for a in apps if a["app_label"] not in REPORT_APPS]
        return apps

    def get_urls(self):
        from . import admin_views

        view = self.admin_view
        return [
            path(
                "analytics/live-sessions/",
                view(admin_views.live_sessions),
                name="analytics_live_sessions",
            ),
            path(
                "analytics/live-sessions/export.csv",
                view(admin_views.live_sessions_csv),
                name="analytics_live_sessions_csv",
            ),
            path("analytics/security/", view(admin_views.security), name="analytics_security"),
            path(
                "reports/",
                view(self.app_index),
                {"app_label": "analytics"},
                name="analytics_reports",
            ),
            path(
                "analytics/users/<int:user_id>/",
                view(admin_views.user_detail),
                name="analytics_user_detail",
            ),
            *super().get_urls(),
        ]


def _reports_app() -> dict:
    """The report pages, first in the admin's navigation."""
    entries = [
        ("Power users", "admin:analytics_poweruser_changelist", "poweruser"),
        ("Idle users", "admin:analytics_idleuser_changelist", "idleuser"),
        ("Live sessions", "admin:analytics_live_sessions", "livesessions"),
        ("Session history", "admin:audit_auditsession_changelist", "sessionhistory"),
        ("Security", "admin:analytics_security", "security"),
        ("Suspicious IPs", "admin:analytics_suspiciousip_changelist", "suspiciousip"),
        ("User activity", "admin:analytics_useractivity_changelist", "useractivity"),
        ("Events", "admin:audit_auditevent_changelist", "events"),
    ]
    return {
        "name": "Reports",
        "app_label": "reports",
        "app_url": reverse("admin:analytics_reports"),
        "has_module_perms": True,
        "models": [
            {
                "name": name,
                "object_name": object_name,
                "admin_url": reverse(url),
                "view_only": True,
                "perms": {"view": True},
            }
            for name, url, object_name in entries
        ],
    }
