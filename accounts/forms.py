"""The admin's login form, over the same login gate as the API's token endpoint."""

from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.exceptions import ValidationError

from . import services
from .clientip import client_of

# The session backend that will load the user on the next requests (Django's login() needs it).
MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"


class AdminLoginForm(AdminAuthenticationForm):
    """Counts failures and locks exactly like the API (accounts.services.password_authenticate).

    While a lock holds, `lockout` carries it; the admin site answers 429 with Retry-After.
    """

    lockout: services.LoginThrottled | None = None

    def clean(self):
        username = self.cleaned_data.get("username")
        password = self.cleaned_data.get("password")
        if username is not None and password:
            assert self.request is not None  # the admin always builds its login form with one
            try:
                user = services.admin_login(
                    username=username, password=password, **client_of(self.request.META)
                )
            except services.LoginThrottled as exc:
                self.lockout = exc
                raise ValidationError(
                    "Too many failed login attempts. Try again in %(seconds)s seconds.",
                    code="throttled",
                    params={"seconds": exc.retry_after},
                ) from exc
            except services.LoginFailed as exc:
                raise self.get_invalid_login_error() from exc
            user.backend = MODEL_BACKEND  # type: ignore[attr-defined]  # as login() expects
            self.user_cache = user
        return self.cleaned_data
