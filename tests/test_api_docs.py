"""The API docs (/api/v1/docs) in headless Chromium: they render offline under the site's CSP and work."""

from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from tests import factories

pytestmark = pytest.mark.e2e


def test_the_docs_render_offline_and_call_the_api(daphne_server, launch_browser):
    raw = factories.api_key("sessions:read", name="docs")
    page = launch_browser().new_page()
    hosts, problems = set(), []
    page.on("request", lambda request: hosts.add(urlsplit(request.url).netloc))
    page.on("console", lambda message: message.type == "error" and problems.append(message.text))
    page.on("pageerror", lambda error: problems.append(str(error)))

    response = page.goto(f"{daphne_server.url}/api/v1/docs")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    expect(page.locator(".opblock")).to_have_count(
        21
    )  # 8 of sessions and events, 1 of control, 5 of profiles, 7 of webhooks

    # Authorize with the key, then run "List sessions" from the page.
    page.click("button.authorize")
    page.locator(".modal-ux input[type=text]").first.fill(raw)
    page.click(".modal-ux button.authorize")
    page.click(".modal-ux button.btn-done")
    page.click("#operations-sessions-sessions_app_api_api_list_sessions .opblock-summary")
    page.click("button.try-out__btn")
    page.click("button.execute")
    expect(page.locator(".live-responses-table tbody .response-col_status").first).to_have_text("200")

    assert hosts == {urlsplit(daphne_server.url).netloc}, "the docs must load nothing from elsewhere"
    assert problems == []
