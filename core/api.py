"""API-wide plumbing: the exception handler that keeps every error a clean JSON answer."""

import logging
from typing import Any

from django.db import InterfaceError, OperationalError, connection
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from core.redis import REDIS_UNAVAILABLE

logger = logging.getLogger(__name__)


def _unavailable(what: str, context: dict[str, Any]) -> Response:
    logger.warning("%s: %s unavailable", context["view"].__class__.__name__, what)
    return Response(
        {"detail": f"The {what} is unavailable; try again shortly."},
        status=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": "5"},
    )


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    # Views that need a store that is away cannot answer: say so (503), don't crash (500).
    if isinstance(exc, REDIS_UNAVAILABLE):
        return _unavailable("live session store", context)
    if isinstance(exc, OperationalError | InterfaceError):
        connection.close_if_unusable_or_obsolete()
        return _unavailable("database", context)
    return drf_exception_handler(exc, context)
