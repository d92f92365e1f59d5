from django.contrib.admin.apps import AdminConfig


class SessionhubAdminConfig(AdminConfig):
    """The Django admin, with the analytics overview and report pages of sessionhub."""

    default_site = "analytics.admin_site.SessionhubAdminSite"
