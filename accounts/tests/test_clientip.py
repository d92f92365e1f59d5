import pytest

from accounts.clientip import client_ip


@pytest.mark.parametrize(
    ("trusted", "remote", "xff", "expected"),
    [
        # Nothing trusted: XFF is ignored whatever it says.
        ("", "203.0.113.9", "1.2.3.4", "203.0.113.9"),
        # One proxy in front: the right-most entry is the client; the forged left one is not.
        ("1", "10.0.0.2", "6.6.6.6, 198.51.100.20", "198.51.100.20"),
        ("1", "10.0.0.2", "198.51.100.20", "198.51.100.20"),
        # Two proxies: skip one more hop from the right.
        ("2", "10.0.0.2", "6.6.6.6, 198.51.100.20, 10.0.0.1", "198.51.100.20"),
        # CIDR list: walk right to left past trusted proxies to the first untrusted hop.
        ("10.0.0.0/8", "10.0.0.2", "6.6.6.6, 198.51.100.20, 10.1.1.1", "198.51.100.20"),
        # A request that does not come through a trusted proxy: its XFF is not believed.
        ("10.0.0.0/8", "203.0.113.9", "1.2.3.4", "203.0.113.9"),
        # Garbage where the client address should be: the proxy that passed it on.
        ("10.0.0.0/8", "10.0.0.2", "not-an-ip", "10.0.0.2"),
        ("1", "10.0.0.2", "<script>", "10.0.0.2"),
        # Ports and IPv6 forms.
        ("1", "10.0.0.2", "198.51.100.20:4711", "198.51.100.20"),
        ("1", "10.0.0.2", "[2001:db8::7]:443", "2001:db8::7"),
        ("", "::ffff:192.0.2.1", "", "192.0.2.1"),
        ("", "", "", ""),
    ],
)
def test_client_ip(settings, trusted, remote, xff, expected):
    settings.TRUSTED_PROXIES = trusted
    meta = {"REMOTE_ADDR": remote}
    if xff:
        meta["HTTP_X_FORWARDED_FOR"] = xff
    assert client_ip(meta) == expected
