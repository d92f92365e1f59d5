from django import template

from accounts.livesessions import SessionStatus
from analytics import useragents
from core import clock

register = template.Library()


@register.filter
def epoch(value):
    """Epoch seconds (as Redis keeps them) to an aware datetime for the `date` filter."""
    if value in (None, ""):
        return None
    return clock.to_datetime(float(value))


@register.filter
def seconds_to_hms(value) -> str:
    seconds = int(value or 0)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


@register.filter
def device_label(user_agent) -> str:
    """ "Firefox 133 on Linux (desktop)" from a User-Agent (analytics.useragents)."""
    return useragents.parse(user_agent or "").label


@register.filter
def status_label(value) -> str:
    """ "active now" / "recent" / "inactive" for a session status (SessionStatus.label)."""
    try:
        return SessionStatus(value).label
    except ValueError:
        return value or ""
