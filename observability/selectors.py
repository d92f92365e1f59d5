import logging

from django.db import DatabaseError, connection

from core.redis import REDIS_UNAVAILABLE, get_redis

logger = logging.getLogger(__name__)


def _database_state() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        logger.warning("health: database unavailable (%s)", type(exc).__name__)
        # Drop the broken connection so the next request reconnects instead of reusing it.
        connection.close_if_unusable_or_obsolete()
        return "unavailable"
    return "ok"


def _redis_state() -> str:
    try:
        get_redis().ping()
    except REDIS_UNAVAILABLE as exc:
        logger.warning("health: redis unavailable (%s)", type(exc).__name__)
        return "unavailable"
    return "ok"


def health_check() -> dict[str, str]:
    return {"database": _database_state(), "redis": _redis_state()}
