"""Who may read the analytics reports: one rule for the admin's pages and the REST API."""

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

VIEW_PERM = "analytics.view_analytics"


def can_view_reports(user: Any) -> bool:
    """Staff with the analytics view permission (superusers have every permission)."""
    return bool(user and user.is_active and user.is_staff and user.has_perm(VIEW_PERM))


class CanViewReports(BasePermission):
    message = "Staff with the analytics view permission only."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return can_view_reports(request.user)
