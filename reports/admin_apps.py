from django.contrib.admin.apps import AdminConfig


class SessionhubAdminConfig(AdminConfig):
    """The Django admin, with the analytics overview and report pages of sessionhub."""

    default_site = "reports.admin_site.SessionhubAdminSite"

    def ready(self):
        super().ready()
        from django.contrib.auth.signals import user_logged_in

        from core.admin_session import stamp_sign_in

        user_logged_in.connect(stamp_sign_in, dispatch_uid="sessionhub.admin_session")
