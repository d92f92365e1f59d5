"""Production: every secret comes from the environment, and bad values stop the start-up."""

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import SESSIONHUB, TRUSTED_PROXIES, env, simple_jwt_settings

MIN_SIGNING_KEY_BYTES = 32


def _require(name: str) -> str:
    value = env.str(name, default="")
    if not value:
        raise ImproperlyConfigured(f"Set the {name} environment variable (production settings).")
    return value


if env.bool("DEBUG", default=False):
    raise ImproperlyConfigured("DEBUG must be off in production: unset DEBUG or set DEBUG=false.")
DEBUG = False

SECRET_KEY = _require("SECRET_KEY")
JWT_SIGNING_KEY = _require("JWT_SIGNING_KEY")
if len(JWT_SIGNING_KEY.encode()) < MIN_SIGNING_KEY_BYTES:
    raise ImproperlyConfigured(
        f"JWT_SIGNING_KEY must be at least {MIN_SIGNING_KEY_BYTES} bytes "
        f"(HS256 needs a key as long as its hash); it has {len(JWT_SIGNING_KEY.encode())}."
    )
if JWT_SIGNING_KEY == SECRET_KEY:
    raise ImproperlyConfigured("JWT_SIGNING_KEY must differ from SECRET_KEY.")
SIMPLE_JWT = simple_jwt_settings(JWT_SIGNING_KEY)

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[])
if not ALLOWED_HOSTS:
    raise ImproperlyConfigured("Set the ALLOWED_HOSTS environment variable (comma-separated).")
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

SESSION_COOKIE_SECURE = env.bool("SECURE_COOKIES", default=True)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# HSTS: browsers that reached the site over HTTPS never use plain HTTP for it again (sent on
# HTTPS responses only). A year, this host and its subdomains; preloading is an opt-in.
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=365 * 24 * 3600)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
if TRUSTED_PROXIES:
    # TLS ends at the proxy, which says so in X-Forwarded-Proto. Believed only when a proxy is
    # declared: straight from a client the header would be a lie nobody checks.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

if not SESSIONHUB["METRICS_TOKEN"] and not SESSIONHUB["METRICS_ALLOWED_IPS"]:
    # Loopback can still scrape; say so once at start-up rather than silently.
    import logging

    logging.getLogger(__name__).warning(
        "Neither METRICS_TOKEN nor METRICS_ALLOWED_IPS is set: /metrics answers loopback only."
    )
