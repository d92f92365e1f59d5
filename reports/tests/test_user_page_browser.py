"""The per-user page in a real Chromium at 1280 px: every section there, nothing overflowing.

The workload is test_user_page's (alice: 128 timeline entries, two live sessions, calls in
the last minutes, failed logins against the account). A screenshot goes to
artifacts/screenshots/user-page-1280.png.
"""

from pathlib import Path

import pytest
from django.urls import reverse

from .test_admin_browser import CHROMIUM_ARGS, SCREENSHOTS
from .test_user_page import alice  # noqa: F401 - the workload fixture

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="make test installs it"),
]

PASSWORD = "browser test passphrase"


@pytest.fixture
def chromium_page():
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    mp = pytest.MonkeyPatch()
    mp.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # the ORM stays synchronous meanwhile
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS
        )
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        yield context.new_page()
        browser.close()
    mp.undo()


def test_the_user_page_at_1280_px(chromium_page, live_server, alice, django_user_model):  # noqa: F811
    django_user_model.objects.create_superuser("root", password=PASSWORD)
    page = chromium_page
    url = reverse("admin:analytics_user_detail", args=[alice.pk])
    page.goto(f"{live_server.url}/admin/login/?next={url}")
    page.fill("#id_username", "root")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#timeline")
    for section in (
        "#user-daily-chart svg",
        "#user-minute-chart svg",
        "#user-live-sessions",
        "#user-devices",
        "#user-failed-logins",
        "#timeline-older",
    ):
        assert page.locator(section).count() == 1, section
    assert page.inner_text("#user-calls-last-hour").strip() == "18"
    assert page.locator("#user-devices tr.device").count() == 2
    assert page.locator("#timeline tbody tr").count() == 50
    width = page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert width[0] <= width[1], f"horizontal overflow: {width[0]} px in {width[1]}"
    page.screenshot(path=str(SCREENSHOTS / "user-page-1280.png"), full_page=True)
    page.click("#timeline-older")
    page.wait_for_selector("#timeline-newer")
    assert page.locator("#timeline tbody tr").count() == 50
