"""A webhook receiver on loopback that verifies every delivery with the standardwebhooks library, and
the task worker as a process of its own (as in production), for the webhook and retention tests."""

import os
import signal
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.conftest import ROOT, database_url_for_tests, free_port


class Receiver:
    """Answers `status` (200 by default) to verified deliveries; `hold` makes it wait before answering.

    `received` lists (webhook-id, payload) of every verified request, `refused` the ones whose
    signature did not verify.
    """

    def __init__(self, secret: str = "", port: int | None = None, status: int = 200):
        self.secret, self.port, self.status = secret, port or free_port(), status
        self.received: list[tuple[str, dict]] = []
        self.refused: list[str] = []
        self.requests = 0
        self.hold = threading.Event()
        self.hold.set()  # set: answer at once
        self.arrived = threading.Event()
        self.server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def start(self) -> "Receiver":
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests += 1
                receiver.arrived.set()
                receiver.hold.wait()
                try:
                    payload = Webhook(receiver.secret).verify(body, dict(self.headers))
                except WebhookVerificationError as exc:
                    receiver.refused.append(str(exc))
                    self.send_response(400)
                else:
                    if 200 <= receiver.status < 300:
                        receiver.received.append((self.headers["webhook-id"], payload))
                    self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        if self.server:
            self.hold.set()
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def types(self) -> list[str]:
        return [payload["type"] for _, payload in self.received]


# Fast retries for tests: about 8 s over 8 attempts instead of a day.
FAST = {
    "WEBHOOK_TIMEOUT_SECONDS": "2",
    "WEBHOOK_RETRY_DELAYS": "0.3,0.5,0.5,1,1,2,2",
    "SESSION_SETTLE_SECONDS": "0.3",
}


class Worker:
    """`manage.py db_worker` on the test database: start(), kill() (SIGKILL) and start() again."""

    def __init__(self, env: dict | None = None):
        self.env = {**FAST, **(env or {})}
        self.process = None
        self.log_path = ROOT / f".worker-{os.getpid()}-{id(self)}.log"

    def start(self) -> "Worker":
        env = {
            **os.environ,
            "DATABASE_URL": database_url_for_tests(),
            "PYTHONUNBUFFERED": "1",
            "REAPER_INTERVAL_SECONDS": "0",
            **self.env,
        }
        self.log = open(self.log_path, "ab")
        command = [sys.executable, "manage.py", "db_worker", "--queue-name=*", "--no-reload", "--interval=0.1"]
        self.process = subprocess.Popen(
            [*command, "--no-startup-delay"], cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT
        )
        return self

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()
        self.log_path.unlink(missing_ok=True)
