"""A deploy serves its static files under hashed names, modules included, so a page never mixes two deploys."""

import re
import subprocess
import sys

from playwright.sync_api import expect

from tests.conftest import BROWSER_TIMEOUT_MS, FAKE_MIC, GRANT_MIC, ROOT

HASHED = re.compile(r"\.[0-9a-f]{12}\.(js|json|css|svg)$")


def test_the_page_runs_from_collected_hashed_files(tmp_path, make_daphne_server, launch_browser):
    static_root = tmp_path / "static"
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "STATIC_ROOT": str(static_root), "WHITENOISE_USE_FINDERS": "false"},
        check=True,
    )
    server = make_daphne_server(env={"STATIC_ROOT": str(static_root), "WHITENOISE_USE_FINDERS": "false"})
    page = launch_browser(FAKE_MIC, GRANT_MIC).new_page()
    page.set_default_timeout(BROWSER_TIMEOUT_MS)
    loaded = []
    page.on("response", lambda r: loaded.append((r.url, r.status)) if "/static/" in r.url else None)
    page.goto(server.url)
    page.get_by_role("button", name="Start conversation").click()
    expect(page.get_by_role("status")).to_have_text("Live")
    expect(page.get_by_role("region", name="Transcript").get_by_role("listitem").first).to_contain_text("Avatar:")

    modules = [url for url, _ in loaded if "/static/js/" in url]
    assert len(modules) >= 10 and any("close-codes." in url for url in modules)
    assert [(url, status) for url, status in loaded if status != 200 or not HASHED.search(url)] == []
    # Hashed names never change content, so browsers may keep them for good.
    cached = page.request.get(modules[0]).headers["cache-control"]
    assert "immutable" in cached or "max-age=315360000" in cached, cached
