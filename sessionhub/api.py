"""API-wide plumbing: the exception handler that keeps every error a clean JSON answer."""

import logging

from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from sessionhub.redis import REDIS_UNAVAILABLE

logger = logging.getLogger(__name__)


def exception_handler(exc, context):
    if isinstance(exc, REDIS_UNAVAILABLE):
        # Views that read live state cannot answer without Redis: say so, don't crash.
        logger.warning("%s: redis unavailable", context["view"].__class__.__name__)
        return Response(
            {"detail": "The live session store is unavailable; try again shortly."},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "5"},
        )
    return drf_exception_handler(exc, context)
