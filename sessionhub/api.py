"""API-wide plumbing: the exception handler that keeps every error a clean 4xx JSON body."""

from rest_framework.views import exception_handler as drf_exception_handler


def exception_handler(exc, context):
    response = drf_exception_handler(exc, context)
    if response is not None and getattr(exc, "wait", None):
        # Throttled: DRF sets Retry-After already; make sure it is a whole number of seconds.
        response["Retry-After"] = str(max(1, round(exc.wait)))
    return response
