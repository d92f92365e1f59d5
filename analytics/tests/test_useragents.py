"""The devices a user's sessions come from, parsed from real User-Agent strings."""

import pytest

from analytics.useragents import Device, parse

CASES = [
    (
        "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
        Device("Firefox 133", "Linux", "desktop"),
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36",
        Device("Chrome 131", "Windows 10/11", "desktop"),
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.2903.86",
        Device("Edge 131", "Windows 10/11", "desktop"),
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like "
        "Gecko) Version/17.6 Safari/605.1.15",
        Device("Safari 17.6", "macOS", "desktop"),
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
        "like Gecko) Version/17.2 Mobile/15E148 Safari/604.1",
        Device("Safari 17.2", "iOS 17", "mobile"),
    ),
    (
        "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "CriOS/120.0.6099.119 Mobile/15E148 Safari/604.1",
        Device("Chrome 120", "iPadOS 16", "tablet"),
    ),
    (
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.6778.135 Mobile Safari/537.36",
        Device("Chrome 131", "Android 14", "mobile"),
    ),
    (
        "Mozilla/5.0 (Linux; Android 13; SAMSUNG SM-X700) AppleWebKit/537.36 (KHTML, like "
        "Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Safari/537.36",
        Device("Samsung Internet 23", "Android 13", "tablet"),
    ),
    (
        "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36 OPR/115.0.0.0",
        Device("Opera 115", "ChromeOS", "desktop"),
    ),
    ("curl/8.5.0", Device("curl 8.5.0", "", "script")),
    ("python-requests/2.31.0", Device("Python requests 2.31.0", "", "script")),
    ("Go-http-client/1.1", Device("Go net/http 1.1", "", "script")),
    ("PostmanRuntime/7.42.0", Device("Postman 7.42.0", "", "script")),
    ("okhttp/4.12.0", Device("OkHttp 4.12.0", "", "script")),
    (
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        Device("Googlebot", "", "bot"),
    ),
    ("sessionhub-demo-ios/3.2", Device("sessionhub-demo-ios 3.2", "iOS", "app")),
    ("MyApp/2.0 (Android 12)", Device("MyApp 2.0", "Android 12", "app")),
    ("", Device("", "", "unknown")),
    ("<b>stuffer</b>/1.0", Device("", "", "unknown")),
]


@pytest.mark.parametrize(("user_agent", "expected"), CASES, ids=[c[0][:40] for c in CASES])
def test_parse(user_agent, expected):
    assert parse(user_agent) == expected


def test_label():
    assert parse("curl/8.5.0").label == "curl 8.5.0 (script)"
    assert parse("Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0").label == (
        "Firefox 133 on Linux (desktop)"
    )
    assert parse("").label == "unknown client (unknown)"


def test_a_huge_header_is_cut_not_scanned_whole():
    assert parse("curl/8 " + "x" * 100_000).kind == "script"
