"""Shared fixtures: a real Daphne process serving the site on the test database.

The server is a subprocess (as in production), started on a free loopback port with the same
database settings as the test run, so a test can write rows, drive the server over HTTP and
websockets (or with a browser), then read what the server stored. Tests using it need the
`transactional_db` fixture (pulled in here), because the server sees only committed rows.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.db import connections
from playwright.sync_api import expect, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
# Debian's Chromium: no browser is ever downloaded. The flags keep it off the closed network.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# A fake microphone; add GRANT_MIC for a visitor who allows it (without it, getUserMedia is denied).
FAKE_MIC = "--use-fake-device-for-media-stream"
GRANT_MIC = "--use-fake-ui-for-media-stream"
BROWSER_TIMEOUT_MS = 15_000
# Speech and timers in the emulator run this many times faster in tests.
TEST_EMULATOR_SPEED = "20"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url_for_tests() -> str:
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


class DaphneServer:
    """One Daphne process; stop(), kill() and start() again on the same port for fault tests."""

    def __init__(self, port: int | None = None, env: dict | None = None):
        self.port = port or free_port()
        self.extra_env = env or {}
        self.process = None
        self.log_path = ROOT / f".daphne-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0):
        env = {
            **os.environ,
            "DATABASE_URL": database_url_for_tests(),
            "EMULATOR_SPEED": TEST_EMULATOR_SPEED,
            "WHITENOISE_USE_FINDERS": "true",
            "REAPER_INTERVAL_SECONDS": "0",
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        }
        self.log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), "avatar_site.asgi:application"],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"daphne exited early; see {self.log_path}")
            try:
                httpx.get(f"{self.url}/healthz/live", timeout=1)  # up, whatever its database
                return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"daphne did not answer within {timeout}s; see {self.log_path}")

    def stop(self, sig=signal.SIGTERM):
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        if getattr(self, "log", None):
            self.log.close()

    def kill(self):
        """Die the way a crashed process dies: no clean shutdown."""
        self.stop(signal.SIGKILL)


@pytest.fixture(scope="session", autouse=True)
def routes_as_configured():
    """Build the URL and websocket routes before any test overrides settings.

    Whether the emulator is mounted is decided once, at import, from the process's settings; a test
    that switches LIVEAVATAR_EMULATOR off must not decide it for the tests after it.
    """
    from django.urls import get_resolver

    import avatar_site.asgi  # noqa: F401  (websocket routes)

    get_resolver().url_patterns  # noqa: B018  (HTTP routes)


@pytest.fixture(scope="session")
def django_db_modify_db_settings():
    # The threads of database_sync_to_async would keep persistent connections open past the run,
    # and PostgreSQL refuses to drop a test database that still has connections.
    settings.DATABASES["default"]["CONN_MAX_AGE"] = 0


@pytest.fixture(scope="session", autouse=True)
def close_sync_thread_connections(django_db_setup):
    """Before the test database is dropped, close the connections of asgiref's sync thread, where
    async tests' database calls (the ingest writer's among them) run: connections are per thread,
    and PostgreSQL refuses to drop a database still in use."""
    yield
    from asgiref.sync import SyncToAsync

    SyncToAsync.single_thread_executor.submit(connections.close_all).result(timeout=10)


@pytest.fixture
def daphne_server(transactional_db):
    server = DaphneServer().start()
    yield server
    server.stop()
    server.log_path.unlink(missing_ok=True)


@pytest.fixture
def make_daphne_server(transactional_db):
    """Factory for tests that need several processes or custom environment."""
    servers = []

    def make(**kwargs) -> DaphneServer:
        server = DaphneServer(**kwargs).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()
        server.log_path.unlink(missing_ok=True)


@pytest.fixture
def launch_browser(monkeypatch):
    """launch_browser(*extra_flags) -> a headless Chromium, closed after the test.

    Function scope on purpose: Playwright's sync API runs an event loop in the main thread, which
    must not outlive the test into the async tests' own loops.
    """
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # tests use the ORM while that loop runs
    expect.set_options(timeout=BROWSER_TIMEOUT_MS)
    with sync_playwright() as playwright:
        browsers = []

        def launch(*extra_flags):
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *extra_flags])
            browsers.append(browser)
            return browser

        yield launch
        for browser in browsers:
            browser.close()
        # The test's own ORM calls, made while that loop ran, opened a connection of their own
        # (Django keeps connections per context); PostgreSQL would refuse to drop the test database.
        connections.close_all()
