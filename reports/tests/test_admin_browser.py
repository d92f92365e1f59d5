"""The admin in a real Chromium (Debian's, driven by Playwright): what a staff member sees.

A small workload is replayed relative to the real clock (the live server reads the real
PostgreSQL now()), so its figures are known: alice is active now with 150 calls, bob was active
three days ago, carol twenty days ago, dave never; a stuffing IP and a locked (alice, IP) pair.
Screenshots of every page go to artifacts/screenshots/ (git-ignored).
"""

import csv
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission

from accounts import services as account_services
from accounts.tracking import tracker
from analytics import services as analytics_services
from audit import services as audit_services
from core import clock

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="make test installs it"),
]

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(settings.BASE_DIR) / "artifacts" / "screenshots"
PASSWORD = "browser test passphrase"


def _session(user, when: float, ip: str = "198.51.100.10"):
    with clock.simulated(when):
        pair = account_services.login(
            username=user.username, password=PASSWORD, ip=ip, user_agent="client/1"
        )
    return pair


def _calls(user, pair, when: float, count: int, started: float) -> None:
    with clock.simulated(when):
        for _ in range(count):
            tracker.authorize(
                sid=pair.sid,
                user_id=user.pk,
                started_at=int(started),
                ip="198.51.100.10",
                user_agent="client/1",
            )
        assert tracker.flush()


@pytest.fixture
def workload(django_user_model, settings):
    settings.SESSIONHUB = {**settings.SESSIONHUB, "LOGIN_LOCKOUT_BASE_SECONDS": 900}
    make = django_user_model.objects.create_user
    users = {
        name: make(username=name, password=PASSWORD) for name in ("alice", "bob", "carol", "dave")
    }
    now = clock.now()

    alice = _session(users["alice"], now - 1200)
    _calls(users["alice"], alice, now - 900, 120, now - 1200)
    _calls(users["alice"], alice, now - 120, 30, now - 1200)

    bob_start = now - 3 * 86400
    bob = _session(users["bob"], bob_start)
    _calls(users["bob"], bob, bob_start + 300, 40, bob_start)
    with clock.simulated(bob_start + 600):
        account_services.logout(raw_refresh=bob.refresh)

    carol_start = now - 20 * 86400
    carol = _session(users["carol"], carol_start)
    _calls(users["carol"], carol, carol_start + 60, 5, carol_start)
    with clock.simulated(carol_start + 7200):
        account_services.sessions_expire_due()

    for name in ("root", "admin", "test", "guest", "oracle", "alice"):
        with pytest.raises(account_services.LoginFailed):
            account_services.login(
                username=name, password="x", ip="203.0.113.66", user_agent="<b>stuffer</b>/1.0"
            )
    for _ in range(5):
        with pytest.raises(account_services.LoginFailed):
            account_services.login(
                username="alice", password="y", ip="198.51.100.4", user_agent="client/1"
            )
    assert tracker.flush()
    audit_services.sync_run()
    analytics_services.analytics_refresh()
    return users


@pytest.fixture
def manager(django_user_model):
    user = django_user_model.objects.create_user(
        username="manager", password=PASSWORD, is_staff=True
    )
    for codename in ("view_analytics", "manage_sessions"):
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return user


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    # Playwright's sync API keeps an event loop in this thread; the test's own ORM calls are
    # still synchronous, so Django's guard against ORM use inside a loop is lifted meanwhile.
    mp = pytest.MonkeyPatch()
    mp.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()
    mp.undo()


@pytest.fixture
def page(browser, tmp_path):
    context = browser.new_context(accept_downloads=True, viewport={"width": 1400, "height": 1000})
    yield context.new_page()
    context.close()


def sign_in(page, live_server, username: str) -> None:
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")


def shot(page, name: str) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_staff_sees_every_report_with_the_known_figures(
    page, live_server, workload, manager, tmp_path
):
    sign_in(page, live_server, "manager")
    page.wait_for_selector("#overview")
    assert page.inner_text("#card-active-now .value").strip() == "1"
    assert page.inner_text("#card-calls-24h .value").strip() == "150"
    assert page.inner_text("#card-dau .value").strip() == "1"
    assert page.locator("#overview svg").count() == 4
    shot(page, "overview")

    with page.expect_navigation():
        page.click("#report-index >> text=Power users")
    rows = page.locator("#result_list tbody tr")
    assert rows.nth(0).inner_text().split("\t")[:2] == ["alice", "150"]
    shot(page, "power-users")
    with page.expect_download() as download:
        page.click("a.export-csv")
    exported = tmp_path / "power.csv"
    download.value.save_as(exported)
    with exported.open() as handle:
        assert [(r["username"], r["api_calls"]) for r in csv.DictReader(handle)] == [
            ("alice", "150")
        ]
    with page.expect_navigation():  # else the rows read may still be the 24 h page's
        page.click("text=Last 7 days")
    assert rows.nth(1).inner_text().split("\t")[:2] == ["bob", "40"]

    page.click("#result_list >> text=alice")
    page.wait_for_selector("#timeline")
    assert page.inner_text("#user-calls-24h").strip() == "150"
    assert page.locator("#timeline tr", has_text="Login failed").count() == 6
    shot(page, "user-alice")

    page.goto(f"{live_server.url}/admin/analytics/idleuser/")
    idle = page.inner_text("#result_list")
    assert "carol" in idle and "dave" in idle and "alice" not in idle and "bob" not in idle
    shot(page, "idle-users")

    page.goto(f"{live_server.url}/admin/audit/auditsession/?state=ended")
    history = page.inner_text("#result_list")
    assert "Logout" in history and "Idle timeout" in history
    shot(page, "session-history")

    page.goto(f"{live_server.url}/admin/analytics/security/")
    suspicious = page.inner_text("#suspicious-ips")
    assert "203.0.113.66" in suspicious and "<b>stuffer</b>/1.0" in suspicious  # text, not markup
    assert page.locator("#suspicious-ips b").count() == 0
    assert page.locator("tr.lockout", has_text="alice").count() == 1
    shot(page, "security")
    page.click("tr.lockout:has-text('alice') button.lift-lockout")
    page.wait_for_selector("text=Lock-out lifted.")
    assert page.locator("tr.lockout").count() == 0

    page.goto(f"{live_server.url}/admin/analytics/live-sessions/")
    assert page.locator("tr.live-session").count() == 1
    assert page.inner_text("tr.live-session .calls").strip() == "150"
    shot(page, "live-sessions")
    page.check("tr.live-session input[type=checkbox]")
    page.click("#end-selected")
    page.wait_for_selector("text=Ended 1 session.")
    assert page.locator("tr.live-session").count() == 0


def test_non_staff_and_staff_without_permission_are_refused(
    page, live_server, workload, django_user_model
):
    django_user_model.objects.create_user(username="outsider", password=PASSWORD)
    django_user_model.objects.create_user(username="clerk", password=PASSWORD, is_staff=True)
    sign_in(page, live_server, "outsider")
    assert "/admin/login/" in page.url
    assert page.locator(".errornote").count() == 1
    sign_in(page, live_server, "clerk")
    page.wait_for_selector("#content")
    assert page.locator("#overview").count() == 0
    response = page.goto(f"{live_server.url}/admin/analytics/live-sessions/")
    assert response.status == 403
    response = page.goto(f"{live_server.url}/admin/analytics/poweruser/")
    assert response.status == 403
    shot(page, "refused")
