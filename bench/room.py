"""The emulated LiveKit room in Debian's Chromium: time from "Start conversation" to the first video
frame shown, and the CPU one live room costs its Daphne process."""

import statistics
import time

from playwright.sync_api import sync_playwright

from . import servers

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
]
# In the page: when Start is pressed, and when the avatar's first video frame is presented.
WATCH_FIRST_FRAME = """() => {
    window.firstFrame = null;
    document.getElementById('start').addEventListener('click', () => { window.clicked = performance.now(); });
    new MutationObserver(() => {
        const video = document.querySelector('#video video');
        if (video && !video.watched) {
            video.watched = true;
            video.requestVideoFrameCallback(() => { window.firstFrame = performance.now(); });
        }
    }).observe(document.getElementById('video'), {childList: true, subtree: true});
}"""
QUESTIONS = ["What are your hours?", "Hello there", "Where are you?", "Do you deliver?"]


def _start(page, url):
    page.goto(url)
    page.evaluate(WATCH_FIRST_FRAME)
    page.get_by_role("button", name="Start conversation").click()
    page.wait_for_function("() => window.firstFrame !== null", timeout=20_000)
    return page.evaluate("() => window.firstFrame - window.clicked")


def phase_room(workdir, starts: int, seconds: float, log) -> dict:
    env = servers.base_env(
        DATABASE_URL=servers.sqlite_url(workdir, "room"),
        EMULATOR_SPEED=1,
        MINT_RATE_PER_MINUTE=1000,
        MINT_RATE_PER_ADDRESS_PER_MINUTE=1000,
    )
    servers.manage(env, "migrate", "--noinput", "-v0")
    server = servers.Daphne(workdir, env, "room")
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page()
            page.set_default_timeout(20_000)
            log(f"emulated room: {starts} starts to the first video frame")
            firsts = []
            for _ in range(starts):
                firsts.append(_start(page, server.url))
                page.get_by_role("button", name="End conversation").click()
                page.wait_for_function("() => document.getElementById('state').dataset.state === 'ended'")
            page.wait_for_timeout(2000)  # the last room's teardown
            idle_from, idle_cpu = time.monotonic(), server.cpu_seconds()
            page.wait_for_timeout(5000)
            idle_rate = (server.cpu_seconds() - idle_cpu) / (time.monotonic() - idle_from)
            log(f"emulated room: {seconds:g} s of conversation, CPU of its Daphne process")
            _start(page, server.url)
            began, cpu = time.monotonic(), server.cpu_seconds()
            asked = 0
            while time.monotonic() - began < seconds:
                if page.locator("#avatar-speaking").is_hidden():
                    page.get_by_label("Message").fill(QUESTIONS[asked % len(QUESTIONS)])
                    page.get_by_role("button", name="Send").click()
                    asked += 1
                page.wait_for_timeout(1000)
            spent = time.monotonic() - began
            room_cpu = server.cpu_seconds() - cpu - idle_rate * spent
            browser.close()
    finally:
        server.stop()
    return {
        "start_to_first_frame_ms": round(statistics.median(firsts)),
        "first_frame_ms_all": [round(f) for f in firsts],
        "room_cpu_pct": round(100 * room_cpu / spent, 1),
        "idle_cpu_pct": round(100 * idle_rate, 1),
        "conversation_seconds": round(spent),
        "questions": asked,
    }
