"""Developer machine: works with no environment at all.

The throwaway keys below are only for this settings module; `production` never falls back
to them.
"""

from .base import *  # noqa: F403
from .base import env, simple_jwt_settings

DEBUG = env.bool("DEBUG", default=True)
SECRET_KEY = env.str("SECRET_KEY", default="local-only-secret-key-not-for-production-use-0001")
JWT_SIGNING_KEY = env.str(
    "JWT_SIGNING_KEY", default="local-only-jwt-signing-key-not-for-production-0002"
)
SIMPLE_JWT = simple_jwt_settings(JWT_SIGNING_KEY)
