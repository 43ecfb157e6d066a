"""The mint figure's two ends: an emulated LiveAvatar that answers after a fixed delay and times
itself, and a lean client timing the page. The figure is the page's time minus the time spent in
the emulated LiveAvatar, request by request.
"""

import json
import socket
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

            def parse_request(self):
                # LiveAvatar's time starts when the request line has arrived: parsing the headers
                # (slow in http.server) is the upstream's work, not the page's.
                self.started = time.perf_counter()
                return super().parse_request()

            def do_POST(self):
                started = self.started
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                time.sleep(upstream.delay)
                data = {"session_id": str(uuid.uuid4()), "session_token": "bench-session-token-" + uuid.uuid4().hex}
                self._answer({"code": 1000, "data": data, "message": "ok"})
                upstream.calls.append((started, time.perf_counter()))

            do_GET = do_POST

            def _answer(self, body: dict):
                raw = json.dumps(body).encode()
                # One write for the headers and the body, as real servers send a small answer.
                self.wfile.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                    % (len(raw), raw)
                )

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


class PageClient:
    """GETs over one kept-alive HTTP/1.1 connection, as lean as a browser's network stack.

    The mint figure is the page's time: a Python HTTP client (httpx) spends about a millisecond
    per request building and parsing, which a browser does not, and which is not the page's cost.
    No cookies are sent, so every visit is a new visitor.
    """

    def __init__(self, host: str, port: int):
        self.sock = socket.create_connection((host, port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = self.sock.makefile("rb")

    def get(self, path: str) -> tuple[int, bytes]:
        """(status, body) of GET path."""
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/html\r\n\r\n".encode())
        status = int(self.reader.readline().split()[1])
        length = 0
        while (line := self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, self.reader.read(length)

    def close(self):
        self.reader.close()
        self.sock.close()
