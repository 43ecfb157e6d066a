"""Browser-like websocket clients: forwarders speaking the page's protocol, a staff dashboard, echo."""

import asyncio
import json
import random
import time
import uuid
from collections import defaultdict, deque

from websockets.asyncio.client import connect

# One conversational turn as LiveAvatar emits it; forwarders cycle through it.
TURN = [
    ("user.speak_started", None),
    ("user.transcription.chunk", "so what"),
    ("user.transcription.chunk", "so what are your"),
    ("user.speak_ended", None),
    ("user.transcription", "So what are your opening hours?"),
    ("avatar.speak_started", None),
    ("avatar.transcription.chunk", "We are"),
    ("avatar.transcription.chunk", "We are open nine"),
    ("avatar.speak_ended", None),
    ("avatar.transcription", "We are open nine to five."),
]


def forwarded_event(seq: int) -> dict:
    event_type, text = TURN[(seq - 1) % len(TURN)]
    event = {"event_id": uuid.uuid4().hex, "event_type": event_type, "session_id": "bench", "source_event_id": None}
    if text:
        event["text"] = text
    return {"seq": seq, "ts": int(time.time() * 1000), "source": "server", "event": event}


async def open_socket(url: str, origin: str, cookie: str | None = None):
    headers = {"Cookie": f"sessionid={cookie}"} if cookie else None
    return await connect(
        url,
        origin=origin,
        additional_headers=headers,
        max_size=None,
        ping_interval=None,
        open_timeout=60,
        close_timeout=2,
    )


async def gather_limited(coros, limit: int = 50):
    """Run coroutines with at most `limit` at once (connecting 1,000 sockets in one burst overflows backlogs)."""
    semaphore = asyncio.Semaphore(limit)

    async def run(coro):
        async with semaphore:
            return await coro

    return await asyncio.gather(*(run(c) for c in coros))


class Forwarder:
    """One page forwarding its session's events: numbered, kept until acked."""

    def __init__(self, server, session_id: str, credential: str, sent_log: dict | None = None):
        self.url = f"{server.ws_url}/ws/sessions/{session_id}/events/?credential={credential}"
        self.origin = server.url
        self.session_id = session_id
        self.seq = 0
        self.unacked: dict[int, float] = {}
        self.acked = 0
        self.errors: list[str] = []
        self.idle = asyncio.Event()
        self.idle.set()
        # Send times per session, consumed by the Dashboard to time the fan-out.
        self.sent_log = sent_log

    async def open(self):
        self.ws = await open_socket(self.url, self.origin)
        self.reader = asyncio.create_task(self._read())
        return self

    async def send(self, count: int = 1):
        events = []
        for _ in range(count):
            self.seq += 1
            events.append(forwarded_event(self.seq))
            self.unacked[self.seq] = time.perf_counter()
        self.idle.clear()
        if self.sent_log is not None:
            self.sent_log[self.session_id].append(time.perf_counter())
        await self.ws.send(json.dumps({"type": "events", "events": events}))

    async def _read(self):
        async for raw in self.ws:
            message = json.loads(raw)
            if message["type"] == "ack":
                for seq in message["seqs"]:
                    if self.unacked.pop(seq, None) is not None:
                        self.acked += 1
                if not self.unacked:
                    self.idle.set()
            elif message["type"] == "error":
                # Refused events count as not stored; a page would re-send them later.
                self.errors.append(message["code"])
                for seq in message["seqs"]:
                    self.unacked.pop(seq, None)
                if not self.unacked:
                    self.idle.set()

    @property
    def is_open(self) -> bool:
        return not self.reader.done()

    async def close(self):
        await self.ws.close()
        self.reader.cancel()


class Dashboard:
    """A staff member's live feed; times each stored batch from its send to its broadcast."""

    def __init__(self, server, cookie: str, sent_log: dict):
        self.url = f"{server.ws_url}/ws/dashboard/"
        self.origin = server.url
        self.cookie = cookie
        self.sent_log = sent_log
        self.latencies_ms: list[float] = []

    async def open(self):
        self.ws = await open_socket(self.url, self.origin, self.cookie)
        snapshot = json.loads(await self.ws.recv())
        assert snapshot["type"] == "snapshot", snapshot
        self.reader = asyncio.create_task(self._read())
        return self

    async def _read(self):
        async for raw in self.ws:
            message = json.loads(raw)
            if message["type"] == "session":
                sent = self.sent_log.get(message["session"]["id"])
                if sent:
                    self.latencies_ms.append((time.perf_counter() - sent.popleft()) * 1000)

    async def close(self):
        await self.ws.close()
        self.reader.cancel()


def new_sent_log() -> dict:
    return defaultdict(deque)


async def paced(forwarders: list[Forwarder], per_second: float, seconds: float):
    """Every forwarder sends one event every 1/per_second s, at random phases, for `seconds`."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds

    async def run(forwarder: Forwarder):
        start = loop.time() + random.random() / per_second
        n = 0
        while (due := start + n / per_second) < end:
            await asyncio.sleep(max(0.0, due - loop.time()))
            if not forwarder.is_open:
                return
            await forwarder.send()
            n += 1

    await asyncio.gather(*(run(f) for f in forwarders))


async def closed_loop_ingest(forwarders: list[Forwarder], seconds: float) -> float:
    """For `seconds`, each forwarder sends a one-event message as soon as the previous one is acked;
    events stored a second."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    acked_before = sum(f.acked for f in forwarders)

    async def run(forwarder: Forwarder):
        while loop.time() < end:
            await forwarder.send()
            await forwarder.idle.wait()

    started = time.perf_counter()
    await asyncio.gather(*(run(f) for f in forwarders))
    return (sum(f.acked for f in forwarders) - acked_before) / (time.perf_counter() - started)


async def closed_loop_echo(server, sockets: int, seconds: float) -> float:
    """The same load against the bare echo consumer; messages echoed a second."""
    url = f"{server.ws_url}/ws/bench/echo/"
    connections = await gather_limited(open_socket(url, server.url) for _ in range(sockets))
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    echoed = 0

    async def run(ws):
        nonlocal echoed
        seq = 0
        while loop.time() < end:
            seq += 1
            await ws.send(json.dumps({"type": "events", "events": [forwarded_event(seq)]}))
            await ws.recv()
            echoed += 1

    started = time.perf_counter()
    await asyncio.gather(*(run(ws) for ws in connections))
    rate = echoed / (time.perf_counter() - started)
    await asyncio.gather(*(ws.close() for ws in connections))
    return rate


def percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]
