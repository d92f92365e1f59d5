"""Reads of the audit trail that more than one layer shows (the session history report)."""

from django.db.models import QuerySet

from .models import AuditSession

SESSION_STATES = ("ended", "open")


def session_history(
    *,
    state: str | None = None,
    end_reason: str | None = None,
    user_id: int | None = None,
    queryset: QuerySet[AuditSession] | None = None,
) -> QuerySet[AuditSession]:
    """Sessions as the session history report filters them (open or ended, end reason, user)."""
    queryset = AuditSession.objects.all() if queryset is None else queryset
    if state == "ended":
        queryset = queryset.filter(ended_at__isnull=False)
    elif state == "open":
        queryset = queryset.filter(ended_at__isnull=True)
    if end_reason:
        queryset = queryset.filter(end_reason=end_reason)
    if user_id is not None:
        queryset = queryset.filter(user_id=user_id)
    return queryset
