"""An emulated LiveAvatar REST API that answers every call after a fixed delay, and times itself.

The mint figure is the page's time minus the time spent here, request by request.
"""

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class SlowLiveAvatar:
    def __init__(self, delay_ms: float):
        self.delay = delay_ms / 1000
        self.calls: list[tuple[float, float]] = []  # (start, end) perf_counter of every request
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: without TCP_NODELAY (which real servers set), a
            # kept-alive connection waits for the client's delayed ACK, 40 ms a call on Linux.
            disable_nagle_algorithm = True

            def do_POST(self):
                started = time.perf_counter()
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                time.sleep(upstream.delay)
                data = {"session_id": str(uuid.uuid4()), "session_token": "bench-session-token-" + uuid.uuid4().hex}
                self._answer({"code": 1000, "data": data, "message": "ok"})
                upstream.calls.append((started, time.perf_counter()))

            do_GET = do_POST

            def _answer(self, body: dict):
                raw = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def time_within(self, start: float, end: float) -> float:
        """Seconds spent answering requests that began inside [start, end]."""
        return sum(e - s for s, e in self.calls if start <= s <= end)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
