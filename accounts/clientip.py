"""The client's IP address, resolved safely behind reverse proxies.

X-Forwarded-For is a list every proxy appends to; its left-most entries are whatever the client
chose to send. We therefore read it from the right and only through proxies we trust
(`TRUSTED_PROXIES`): either a hop count ("1": one proxy in front of us, REMOTE_ADDR is that
proxy, the right-most XFF entry is the client) or a list of proxy addresses/CIDRs (walk from
the right past trusted proxies; the first untrusted hop is the client). With nothing trusted,
REMOTE_ADDR is the client and XFF is ignored.
"""

import ipaddress
from functools import cache, lru_cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@cache
def _trusted(spec: str) -> int | tuple[Network, ...]:
    spec = spec.strip()
    if not spec:
        return 0
    if spec.isdigit():
        return int(spec)
    try:
        return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in spec.split(","))
    except ValueError as exc:
        raise ImproperlyConfigured(
            f"TRUSTED_PROXIES must be a hop count or a comma-separated list of CIDRs: {exc}"
        ) from exc


@lru_cache(maxsize=8192)
def _parse(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address from a header value (cached: the same few addresses come again and again,
    and parsing one costs more than the rest of the request's tracking)."""
    value = value.strip()
    if value.startswith("[") and "]" in value:  # "[2001:db8::1]:443"
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:  # "203.0.113.7:51234"
        value = value.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped or address


def client_ip(meta: dict) -> str:
    """The client's address from a request's META; '' when there is none to be had."""
    remote = _parse(meta.get("REMOTE_ADDR", "") or "")
    trusted = _trusted(settings.TRUSTED_PROXIES)
    if remote is None:
        return ""
    forwarded = meta.get("HTTP_X_FORWARDED_FOR", "")
    if not trusted or not forwarded:
        return str(remote)
    # The chain as the last proxy saw it, nearest hop last.
    chain = [_parse(part) for part in forwarded.split(",")[-64:]]
    if isinstance(trusted, int):
        # N trusted hops: REMOTE_ADDR is the nearest, XFF's last N-1 entries are the others.
        position = max(len(chain) - trusted, 0)
        for hop in chain[position:]:
            if hop is not None:
                return str(hop)
        return str(remote)
    if not any(remote in net for net in trusted):
        return str(remote)
    nearest_trusted = remote
    for hop in reversed(chain):
        if hop is None:
            # Garbage where an address should be: the hop that added it is all we can name.
            return str(nearest_trusted)
        if not any(hop in net for net in trusted):
            return str(hop)
        nearest_trusted = hop
    return str(nearest_trusted)
