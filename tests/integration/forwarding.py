"""A forwarding client that keeps the page's promise: every event kept until acked, re-sent after
reconnecting and after `server_busy`, so the tests can check that nothing is lost or doubled."""

import json
import time

from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.sync.client import connect


class ResendingForwarder:
    def __init__(self, server, session_id, credential):
        self.url = f"{server.ws_url}/ws/sessions/{session_id}/events/?credential={credential}"
        self.origin = server.url
        self.unacked: dict[int, dict] = {}
        self.busy_answers = 0
        self.reconnects = 0
        self.ws = None

    def _socket(self, deadline):
        while self.ws is None:
            try:
                # legacy=True: websockets' way to hold a connection open across calls (not in a `with`).
                self.ws = connect(self.url, origin=self.origin, open_timeout=2, legacy=True)
                # Like the page: after (re)connecting, send everything not yet acked.
                if self.unacked:
                    self.ws.send(json.dumps({"type": "events", "events": list(self.unacked.values())}))
            except (OSError, InvalidHandshake, TimeoutError):
                self.ws = None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        return self.ws

    def send(self, items, deadline):
        for item in items:
            self.unacked[item["seq"]] = item
        try:
            self._socket(deadline).send(json.dumps({"type": "events", "events": items}))
        except (ConnectionClosed, OSError):
            self._lost()

    def _lost(self):
        self.ws = None
        self.reconnects += 1

    def pump(self, deadline):
        """Read answers until every event is acked; reconnect and re-send whenever the socket dies."""
        while self.unacked:
            if time.monotonic() > deadline:
                raise TimeoutError(f"still unacked: {sorted(self.unacked)}")
            ws = self._socket(deadline)
            try:
                message = json.loads(ws.recv(timeout=1))
            except TimeoutError:
                continue
            except (ConnectionClosed, OSError):
                self._lost()
                continue
            if message["type"] == "ack":
                for seq in message["seqs"]:
                    self.unacked.pop(seq, None)
            elif message["type"] == "error" and message["code"] == "server_busy":
                self.busy_answers += 1
                time.sleep(0.3)
                items = [self.unacked[s] for s in message["seqs"] if s in self.unacked]
                if items:
                    ws.send(json.dumps({"type": "events", "events": items}))

    def close(self):
        if self.ws:
            self.ws.close()
