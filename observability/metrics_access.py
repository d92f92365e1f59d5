"""Who may read /metrics: loopback, the configured allowlist, or a bearer METRICS_TOKEN."""

import hmac
import ipaddress
from functools import cache

from django.core.exceptions import ImproperlyConfigured

from accounts.clientip import client_ip
from core.conf import get_settings


@cache
def _allowlist(spec: str) -> tuple:
    try:
        return tuple(
            ipaddress.ip_network(part.strip(), strict=False)
            for part in spec.split(",")
            if part.strip()
        )
    except ValueError as exc:
        raise ImproperlyConfigured(f"METRICS_ALLOWED_IPS is not a list of CIDRs: {exc}") from exc


def metrics_allowed(meta: dict) -> bool:
    conf = get_settings()
    header = meta.get("HTTP_AUTHORIZATION", "")
    if conf.METRICS_TOKEN and header.startswith("Bearer "):
        offered = header.removeprefix("Bearer ").strip().encode("latin-1", "replace")
        if hmac.compare_digest(offered, conf.METRICS_TOKEN.encode()):
            return True
    # The resolved client, not REMOTE_ADDR: behind a local reverse proxy every request would
    # otherwise come "from loopback".
    try:
        address = ipaddress.ip_address(client_ip(meta))
    except ValueError:
        return False
    if address.is_loopback:
        return True
    return any(address in network for network in _allowlist(conf.METRICS_ALLOWED_IPS))
