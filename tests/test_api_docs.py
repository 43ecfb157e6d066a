"""The API docs (/api/v1/docs) in headless Chromium: they render offline under the site's CSP and work."""

import os
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect, sync_playwright

from sessions_app.models import ApiKey

# Sync Playwright runs an event loop in the main thread; Django's ORM would refuse to run there.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

pytestmark = pytest.mark.e2e
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def test_the_docs_render_offline_and_call_the_api(daphne_server):
    raw = ApiKey.create("docs", ["sessions:read"])[1]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page()
        hosts, problems = set(), []
        page.on("request", lambda request: hosts.add(urlsplit(request.url).netloc))
        page.on("console", lambda message: message.type == "error" and problems.append(message.text))
        page.on("pageerror", lambda error: problems.append(str(error)))

        response = page.goto(f"{daphne_server.url}/api/v1/docs")
        assert "script-src 'self'" in response.headers["content-security-policy"]
        expect(page.locator(".opblock")).to_have_count(8)

        # Authorize with the key, then run "List sessions" from the page.
        page.click("button.authorize")
        page.locator(".modal-ux input[type=text]").first.fill(raw)
        page.click(".modal-ux button.authorize")
        page.click(".modal-ux button.btn-done")
        page.click("#operations-sessions-sessions_app_api_api_list_sessions .opblock-summary")
        page.click("button.try-out__btn")
        page.click("button.execute")
        expect(page.locator(".live-responses-table tbody .response-col_status").first).to_have_text("200")
        browser.close()

    assert hosts == {urlsplit(daphne_server.url).netloc}, "the docs must load nothing from elsewhere"
    assert problems == []
