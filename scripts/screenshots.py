"""Take the README's screenshots (docs/*.png) with Debian's Chromium against a Daphne of its own.

    .venv/bin/python scripts/screenshots.py

A scratch SQLite database and the built-in emulator: a visitor holds a conversation while staff
watch it on the dashboard, then staff open the session in the admin.
"""

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import expect, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
PORT = int(os.environ.get("SCREENSHOT_PORT", "8765"))
URL = f"http://127.0.0.1:{PORT}"
PASSWORD = "screenshots-only-42"


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        env = {**os.environ, "DATABASE_URL": f"sqlite:///{scratch}/db.sqlite3", "WHITENOISE_USE_FINDERS": "true"}
        env.pop("REDIS_URL", None)
        manage = [sys.executable, "manage.py"]
        subprocess.run([*manage, "migrate", "-v0"], cwd=ROOT, env=env, check=True)
        subprocess.run(
            [
                *manage,
                "shell",
                "-c",
                f"from django.contrib.auth.models import User; User.objects.create_superuser('alex', '', '{PASSWORD}')",
            ],
            cwd=ROOT,
            env=env,
            check=True,
        )
        daphne = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(PORT), "avatar_site.asgi:application"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_for_server()
            with sync_playwright() as playwright:
                _take(playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS))
        finally:
            daphne.terminate()
            daphne.wait(10)


def _wait_for_server() -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{URL}/healthz", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError("Daphne did not answer")


def _talk(page, question: str, answer_starts: str) -> None:
    page.get_by_label("Message").fill(question)
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#transcript li").last).to_contain_text(answer_starts, timeout=30_000)
    expect(page.locator("#avatar-speaking")).to_be_hidden(timeout=30_000)


def _take(browser) -> None:
    staff = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    staff.goto(f"{URL}/admin/login/?next=/dashboard/")
    staff.fill("#id_username", "alex")
    staff.fill("#id_password", PASSWORD)
    staff.click("input[type=submit]")
    expect(staff.locator("#feed-status")).to_have_text("live")

    visitor = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    visitor.goto(URL)
    visitor.get_by_role("button", name="Start conversation").click()
    expect(visitor.get_by_role("status")).to_have_text("Live", timeout=30_000)
    expect(visitor.locator("#avatar-speaking")).to_be_hidden(timeout=30_000)
    _talk(visitor, "What are your hours?", "We are open")
    visitor.screenshot(path=DOCS / "visitor-desktop.png")

    expect(staff.locator(".card .transcript li")).to_have_count(3)
    expect(staff.locator("#period-today dd").nth(2)).to_contain_text("ms", timeout=20_000)  # figures followed
    staff.screenshot(path=DOCS / "dashboard.png", full_page=True)

    phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True).new_page()
    phone.goto(URL)
    phone.get_by_role("button", name="Start conversation").click()
    expect(phone.get_by_role("status")).to_have_text("Live", timeout=30_000)
    expect(phone.locator("#avatar-speaking")).to_be_hidden(timeout=30_000)
    _talk(phone, "What are your hours?", "We are open")
    phone.screenshot(path=DOCS / "visitor-phone.png")
    phone.get_by_role("button", name="End conversation").click()

    session_id = visitor.evaluate("window.avatarApp.conversation.config.session_id")
    visitor.get_by_role("button", name="End conversation").click()
    expect(visitor.get_by_role("status")).to_contain_text("Ended")
    staff.goto(f"{URL}/admin/sessions_app/avatarsession/")
    staff.screenshot(path=DOCS / "admin-sessions.png", full_page=True)
    # The session's page from its transcript on, with a turn's folded chunks opened.
    staff.set_viewport_size({"width": 1280, "height": 1100})
    staff.goto(f"{URL}/admin/sessions_app/avatarsession/{session_id}/change/")
    staff.locator(".event-timeline details summary").first.click()
    staff.get_by_role("heading", name="Transcript").evaluate("(heading) => window.scrollTo(0, heading.offsetTop - 8)")
    staff.screenshot(path=DOCS / "admin-session.png")


if __name__ == "__main__":
    main()
