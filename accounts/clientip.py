"""The client's IP address: resolved safely behind reverse proxies, validated where it enters.

X-Forwarded-For is a list every proxy appends to; its left-most entries are whatever the client
chose to send. We therefore read it from the right and only through proxies we trust
(`TRUSTED_PROXIES`):

* nothing trusted: REMOTE_ADDR is the client and XFF is ignored;
* a hop count ("1": one proxy in front of us, REMOTE_ADDR is that proxy, the right-most XFF
  entry is the client): believed only when REMOTE_ADDR is a loopback or private address. A
  proxy in front of the app reaches it over loopback or a private network; a client that
  reaches the app directly from the internet has a public REMOTE_ADDR, and the XFF it wrote
  itself is ignored. A proxy that connects from a public address must be listed by address;
* a list of proxy addresses/CIDRs: walk from the right past trusted proxies; the first untrusted
  hop is the client, whatever it holds. A hop that is not an address is still the client — an
  opaque one that matches no allowlist and never falls back to the proxy's own address.

Every address that leaves this module is canonical, as PostgreSQL's `inet` accepts it: the
`ipaddress` module's compressed form, an IPv4-mapped IPv6 address as IPv4, no IPv6 zone id
("fe80::1%eth0" names a link of the sender's host: meaningless here, and not an `inet`).
Anything else is not an address, and the client's address is then "": the request is served,
stored with no IP (NULL) and throttled in one shared bucket (accounts.throttling.ip_bucket).
"""

import ipaddress
from functools import cache, lru_cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from .events import MAX_USER_AGENT, clean_text

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# "[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]:65535" is 54 characters: anything longer is
# not an address, and is not cached either (the cache would hold attacker-chosen strings).
MAX_ADDRESS_TEXT = 64


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


def parse(value: str) -> Address | None:
    """The address in a REMOTE_ADDR or X-Forwarded-For entry (a port may follow it), or None."""
    value = value.strip()
    if not value or len(value) > MAX_ADDRESS_TEXT or not value.isascii():
        return None
    return _parse(value)


@lru_cache(maxsize=4096)
def _parse(value: str) -> Address | None:
    # Cached: the same few addresses come again and again, and parsing one costs more than the
    # rest of the request's tracking.
    host, port = value, ""
    if value.startswith("["):  # "[2001:db8::1]:443"
        host, _, rest = value[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                return None
            port = rest[1:]
            if not port:
                return None
    elif value.count(":") == 1:  # "203.0.113.7:51234"
        host, port = value.split(":")
    if port and not port.isdigit():
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id is not None:
            return None
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
    return address


def canonical(value: str) -> str:
    """An address as it may be stored, or "" when `value` is not one."""
    address = parse(value)
    return "" if address is None else str(address)


def _may_be_proxy(address: Address) -> bool:
    """Hop-count mode: only a peer on loopback or a private network can be our proxy."""
    return address.is_loopback or address.is_private


def client_ip(meta: dict) -> str:
    """The client's canonical address from a request's META; '' when there is none to be had."""
    remote = parse(meta.get("REMOTE_ADDR") or "")
    if remote is None:
        return ""
    trusted = _trusted(settings.TRUSTED_PROXIES)
    forwarded = meta.get("HTTP_X_FORWARDED_FOR", "")
    if not trusted or not forwarded:
        return str(remote)
    # The chain as the last proxy saw it, nearest hop last.
    hops = forwarded.split(",")[-64:]
    if isinstance(trusted, int):
        if not _may_be_proxy(remote):
            return str(remote)
        # N trusted hops: REMOTE_ADDR is the nearest, XFF's last N-1 entries are the others; the
        # entry before them is the client, an address or not.
        return canonical(hops[max(len(hops) - trusted, 0)])
    if not any(remote in net for net in trusted):
        return str(remote)
    nearest_trusted = remote
    for hop in reversed(hops):
        address = parse(hop)
        if address is None:
            return ""
        if not any(address in net for net in trusted):
            return str(address)
        nearest_trusted = address
    return str(nearest_trusted)


def client_of(meta: dict) -> dict[str, str]:
    """The request's client as the login and session services take it: ip and user agent."""
    return {
        "ip": client_ip(meta),
        "user_agent": clean_text(meta.get("HTTP_USER_AGENT"), MAX_USER_AGENT),
    }
