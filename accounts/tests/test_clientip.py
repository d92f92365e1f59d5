"""Client-IP resolution: who the client is, behind which proxies, and what an address is."""

import ipaddress
import random

import pytest
from django.db import connection

from accounts.clientip import canonical, client_ip

# Public addresses (the documentation ranges count as private to the ipaddress module).
PUBLIC = "8.8.4.4"
PUBLIC_2 = "9.9.9.9"


@pytest.mark.parametrize(
    ("trusted", "remote", "xff", "expected"),
    [
        # Nothing trusted: XFF is ignored whatever it says.
        ("", "203.0.113.9", "1.2.3.4", "203.0.113.9"),
        # One proxy in front: the right-most entry is the client; the forged left one is not.
        ("1", "10.0.0.2", "6.6.6.6, 198.51.100.20", "198.51.100.20"),
        ("1", "10.0.0.2", "198.51.100.20", "198.51.100.20"),
        ("1", "127.0.0.1", "198.51.100.20", "198.51.100.20"),
        ("1", "fd00::2", "198.51.100.20", "198.51.100.20"),
        # Two proxies: skip one more hop from the right.
        ("2", "10.0.0.2", "6.6.6.6, 198.51.100.20, 10.0.0.1", "198.51.100.20"),
        # Hop count, but the peer is on the internet: no proxy of ours, its XFF is its own.
        ("1", PUBLIC, "127.0.0.1", PUBLIC),
        ("2", PUBLIC, "127.0.0.1, 10.0.0.1", PUBLIC),
        ("1", "2001:4860::1", "::1", "2001:4860::1"),
        # CIDR list: walk right to left past trusted proxies to the first untrusted hop.
        ("10.0.0.0/8", "10.0.0.2", "6.6.6.6, 198.51.100.20, 10.1.1.1", "198.51.100.20"),
        # A request that does not come through a trusted proxy: its XFF is not believed.
        ("10.0.0.0/8", "203.0.113.9", "1.2.3.4", "203.0.113.9"),
        # Not an address where the client should be: an opaque client, never the proxy.
        ("10.0.0.0/8", "10.0.0.2", "not-an-ip", ""),
        ("127.0.0.1/32", "127.0.0.1", "garbage", ""),
        ("127.0.0.1/32", "127.0.0.1", "127.1", ""),
        ("127.0.0.1/32", "127.0.0.1", "0177.0.0.1", ""),
        ("127.0.0.1/32", "127.0.0.1", "1.2.3.4, garbage", ""),
        ("1", "10.0.0.2", "<script>", ""),
        ("1", "10.0.0.2", "1.2.3.4, garbage", ""),
        ("2", "10.0.0.2", "garbage, 10.0.0.1", ""),
        # Ports and IPv6 forms.
        ("1", "10.0.0.2", "198.51.100.20:4711", "198.51.100.20"),
        ("1", "10.0.0.2", "[2001:db8::7]:443", "2001:db8::7"),
        ("1", "10.0.0.2", "198.51.100.20:http", ""),
        ("1", "10.0.0.2", "[2001:db8::7]443", ""),
        ("", "::ffff:192.0.2.1", "", "192.0.2.1"),
        ("", "2001:DB8:0:0:0:0:0:1", "", "2001:db8::1"),
        ("", "", "", ""),
        # Zone ids name a link of the sender's host: not an address here (and not an inet).
        ("", "fe80::1%eth0", "", ""),
        ("1", "10.0.0.2", "fe80::1%<img src=x onerror=alert('ip')>", ""),
        ("1", "10.0.0.2", "[fe80::1%25eth0]:443", ""),
    ],
)
def test_client_ip(settings, trusted, remote, xff, expected):
    settings.TRUSTED_PROXIES = trusted
    meta = {"REMOTE_ADDR": remote}
    if xff:
        meta["HTTP_X_FORWARDED_FOR"] = xff
    assert client_ip(meta) == expected


HOSTILE = [
    "fe80::1%<img src=x onerror=alert('ip')>",
    "fe80::1%eth0",
    "fe80::1%1",
    "::ffff:1.2.3.4%1",
    "[fe80::1%eth0]:80",
    "127.1",
    "0177.0.0.1",
    "0x7f.0.0.1",
    "1.2.3.4.5",
    "256.1.1.1",
    "1.2.3",
    "\uff11.\uff12.\uff13.\uff14",  # full-width digits: int() would take them
    "::ffff:1.2.3.4",
    "::1.2.3.4",
    "64:ff9b::1.2.3.4",
    "2001:db8::/64",
    "10.0.0.0/8",
    "1.2.3.4/32",
    ":::",
    "::ffff:",
    "1:2:3:4:5:6:7:8:9",
    "[::1",
    "::1]",
    "[::1]]:80",
    "1.2.3.4:99999999999999999999",
    "1.2.3.4:-1",
    "' OR 1=1 --",
    "\x00",
    "1.2.3.4\x00",
    "unknown",
    "_hidden",
    "",
    " ",
    "a" * 5000,
]


def _variant(rng: random.Random) -> str:
    """A real address, dressed the ways clients and proxies dress them, or mangled."""
    if rng.random() < 0.5:
        text = str(ipaddress.IPv4Address(rng.getrandbits(32)))
    else:
        text = str(ipaddress.IPv6Address(rng.getrandbits(128)))
        text = rng.choice([text, text.upper(), ipaddress.IPv6Address(text).exploded])
    dress = rng.choice(
        [
            lambda t: t,
            lambda t: f"::ffff:{t}" if "." in t else t,
            lambda t: f"{t}%{rng.choice(['eth0', '1', '<b>', 'x y'])}",
            lambda t: f"[{t}]:{rng.randint(0, 70000)}" if ":" in t else f"{t}:{rng.randint(0, 9)}",
            lambda t: t.replace(".", ".0", 1),
            lambda t: t[: rng.randint(0, len(t))],
            lambda t: t + rng.choice(["/24", "/64", ".", ":", "x", "\x00", " "]),
        ]
    )
    return dress(text)


@pytest.mark.django_db
def test_every_address_that_leaves_is_a_canonical_postgresql_inet(settings):
    """Whatever a client sends, what client_ip returns is "" or a canonical address that
    PostgreSQL's inet takes as it is — the audit sync can never choke on it."""
    rng = random.Random(20261120)
    samples = HOSTILE + [_variant(rng) for _ in range(3000)]
    settings.TRUSTED_PROXIES = "1"
    resolved = {client_ip({"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": s}) for s in samples}
    resolved |= {client_ip({"REMOTE_ADDR": s}) for s in samples}
    addresses = sorted(resolved - {""})
    assert len(addresses) > 1000  # the corpus has real addresses too
    for address in addresses:
        assert "%" not in address
        parsed = ipaddress.ip_address(address)
        assert str(parsed) == address
        assert not (parsed.version == 6 and parsed.ipv4_mapped)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM unnest(%s::text[]) AS a WHERE a::inet IS NULL", [addresses]
        )
        assert cursor.fetchone() == (0,)


def test_canonical_forms():
    assert canonical("::FFFF:192.0.2.1") == "192.0.2.1"
    assert canonical("2001:0db8:0000::0001") == "2001:db8::1"
    assert canonical("[2001:db8::1]:8443") == "2001:db8::1"
    assert canonical("fe80::1%eth0") == ""
    assert canonical("a" * 100) == ""
