"""Every report in a real Chromium at 1280 and 1920 px: nothing overflows sideways, every chart
names its axes, no default-admin leftovers; and the overview's live tiles move by themselves.

Screenshots go to artifacts/screenshots/ (git-ignored), one per page and width.
"""

import json
import threading
import time
import urllib.error
import urllib.request

import pytest

from accounts.tests.helpers import sid_of
from audit.models import AuditSession
from reports.tests import test_admin_browser as known

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not __import__("pathlib").Path("/usr/bin/chromium").exists(),
        reason="make test installs it",
    ),
]

WIDTHS = (1280, 1920)
PASSWORD, sign_in, shot = known.PASSWORD, known.sign_in, known.shot
# The known workload, its staff member and the browser of the admin's browser tests.
workload, manager, browser, page = known.workload, known.manager, known.browser, known.page

OVERFLOW = """() => {
  const root = document.documentElement;
  const wide = [...document.querySelectorAll('table, svg.chart, .sh-card, .sh-panel')]
    .filter(el => el.getBoundingClientRect().right > root.clientWidth + 1)
    .map(el => (el.id || el.className.baseVal || el.className || el.tagName) + ' ' +
         Math.round(el.getBoundingClientRect().right));
  return {scroll: root.scrollWidth, client: root.clientWidth, wide};
}"""

CHART_AXES = """() => [...document.querySelectorAll('svg.chart')].map(svg => ({
  title: svg.getAttribute('aria-label'),
  x: (svg.querySelector('.sh-x-title') || {}).textContent || '',
  y: (svg.querySelector('.sh-y-title') || {}).textContent || '',
  tips: svg.querySelectorAll('title').length,
}))"""


def _report_urls(users) -> dict[str, str]:
    alice = users["alice"]
    sid = AuditSession.objects.filter(user=alice).values_list("sid", flat=True).first()
    return {
        "overview": "/admin/",
        "report-index": "/admin/analytics/",
        "power-users": "/admin/analytics/poweruser/",
        "idle-users": "/admin/analytics/idleuser/",
        "user-activity": "/admin/analytics/useractivity/",
        "suspicious-ips": "/admin/analytics/suspiciousip/",
        "session-history": "/admin/audit/auditsession/",
        "session": f"/admin/audit/auditsession/{sid}/change/",
        "events": "/admin/audit/auditevent/",
        "live-sessions": "/admin/analytics/live-sessions/",
        "security": "/admin/analytics/security/?range=7d",
        "user": f"/admin/analytics/users/{alice.pk}/",
    }


@pytest.mark.parametrize("width", WIDTHS)
def test_every_report_fits_and_every_chart_names_its_axes(
    browser, live_server, workload, manager, width
):
    context = browser.new_context(viewport={"width": width, "height": 1000})
    page = context.new_page()
    missing = []
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
    try:
        sign_in(page, live_server, "manager")
        page.wait_for_selector("#overview")
        for name, url in _report_urls(workload).items():
            response = page.goto(f"{live_server.url}{url}")
            assert response.status == 200, name
            page.wait_for_load_state("networkidle")
            shot(page, f"{name}-{width}")
            fit = page.evaluate(OVERFLOW)
            assert fit["scroll"] <= fit["client"], (name, width, fit)
            assert not fit["wide"], (name, width, fit)
            for chart in page.evaluate(CHART_AXES):
                assert chart["x"].strip() and chart["y"].strip(), (name, chart)
                assert chart["tips"] > 1, (name, chart)  # the chart's title + exact values
            text = page.inner_text("body")
            assert "Select " not in page.title() and "to view" not in page.title(), name
            assert "View site" not in text, name
        assert not missing, missing  # the favicon included
    finally:
        context.close()


def test_report_index_lists_every_report_and_rows_link_to_users(
    page, live_server, workload, manager
):
    sign_in(page, live_server, "manager")
    page.goto(f"{live_server.url}/admin/analytics/")
    names = page.locator("#content-main th[scope=row]").all_inner_texts()
    for report in (
        "Power users",
        "Idle users",
        "Live sessions",
        "Session history",
        "Security",
        "Suspicious IPs",
        "User activity",
        "Events",
    ):
        assert report in names, (report, names)
    page.goto(f"{live_server.url}/admin/analytics/poweruser/")
    assert page.title().startswith("Power users")
    assert page.locator("#result_list a", has_text="View").count() == 0
    page.goto(f"{live_server.url}/admin/analytics/poweruser/24h:{workload['alice'].pk}/change/")
    page.wait_for_selector("#timeline")  # the row's raw page is now the user's page
    page.goto(f"{live_server.url}/admin/audit/auditsession/")
    sids = page.locator("#result_list code.sh-sid").all_inner_texts()
    assert sids and len(set(sids)) == len(sids) and all(len(s) >= 20 for s in sids)
    with page.expect_navigation():  # to its "load": the whole page, not what had arrived
        page.locator("#result_list code.sh-sid").first.click()
    body = page.inner_text("#content")
    assert "API calls per hour" in body and "Generation" not in body and "{" not in body


def _luminance(css_colour: str) -> float:
    red, green, blue = (
        int(part) for part in css_colour[css_colour.index("(") + 1 : -1].split(",")[:3]
    )
    return (0.2126 * red + 0.7152 * green + 0.0722 * blue) / 255


@pytest.mark.parametrize(("width", "theme"), [(1280, "light"), (1920, "dark")])
def test_the_overview_marks_today_as_partial(browser, live_server, workload, manager, width, theme):
    context = browser.new_context(viewport={"width": width, "height": 1000}, color_scheme=theme)
    page = context.new_page()
    try:
        sign_in(page, live_server, "manager")
        page.wait_for_selector("#overview")
        chart = page.locator("#chart-active-users svg")
        assert chart.locator(".sh-partial").count() >= 3  # one per series
        assert "partial" in chart.inner_html()
        assert "partial day" in page.inner_text("#card-dau")
        for section in ("#live-tiles", "#usage", "#top-power-users", "#newest-idle-users"):
            header = page.inner_text(f"{section} h2").lower()
            assert any(word in header for word in ("live", "rolled up", "synced")), section
        width_used = page.evaluate("document.querySelector('#overview').offsetWidth")
        assert width_used > width * 0.8, width_used  # the whole page, not a column
        assert page.inner_text("#top-power-users tbody tr >> nth=0").startswith("alice")
        assert "carol" in page.inner_text("#newest-idle-users")
        assert "203.0.113.66" in page.inner_text("#attacking-ips")
        # Axis titles follow the admin's theme: dark text on light, light text on dark.
        colour = page.evaluate(
            "getComputedStyle(document.querySelector('svg.chart .sh-axis-title')).fill"
        )
        assert (_luminance(colour) > 0.6) == (theme == "dark"), colour
        shot(page, f"overview-{theme}-{width}")
    finally:
        context.close()


def _call(url: str, body: dict | None = None, access: str = "") -> tuple[int, dict]:
    """One HTTP request to the live server (http://127.0.0.1), as a REST client makes it."""
    headers = {"Content-Type": "application/json"}
    if access:
        headers["Authorization"] = f"Bearer {access}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data, headers)  # noqa: S310 - our own live server
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, {}


def _traffic(base: str, username: str) -> None:
    """A client logging in and calling the API, and a stranger failing to log in."""
    status, tokens = _call(f"{base}/api/auth/token/", {"username": username, "password": PASSWORD})
    assert status == 200 and sid_of(tokens["access"])
    for _ in range(12):
        assert _call(f"{base}/api/me/", access=tokens["access"])[0] == 200
    for name in ("root", "admin", "oracle"):
        body = {"username": name, "password": "nope"}
        assert _call(f"{base}/api/auth/token/", body)[0] == 401


def test_live_tiles_follow_background_traffic_without_a_reload(
    page, live_server, workload, manager
):
    sign_in(page, live_server, "manager")
    page.wait_for_selector("#live-tiles")
    page.evaluate("window.__notReloaded = true")

    def tile(name: str) -> int:
        return int(page.inner_text(f"[data-tile={name}]").replace(",", "").replace("?", "-1"))

    before = {n: tile(n) for n in ("active_now", "api_calls_per_minute", "failed_logins_5m")}
    worker = threading.Thread(target=_traffic, args=(live_server.url, "bob"))
    started = time.monotonic()
    worker.start()
    worker.join(10)
    assert not worker.is_alive()
    page.wait_for_function(
        """(b) => {
          const v = n => parseInt(document.querySelector(`[data-tile=${n}]`).textContent
                                  .replace(/,/g, ''), 10);
          return v('active_now') > b.active_now
              && v('api_calls_per_minute') >= b.api_calls_per_minute + 12
              && v('failed_logins_5m') >= b.failed_logins_5m + 3;
        }""",
        arg=before,
        timeout=5000,
    )
    assert time.monotonic() - started < 5 + 10  # the wait above is the 5 s bound
    assert page.evaluate("window.__notReloaded") is True
    ages = page.locator("#live-tiles .sh-card [data-age]").all_inner_texts()
    assert len(ages) == 6 and all(" s ago" in age for age in ages), ages  # each tile's age
    shot(page, "overview-live")
