"""Operations against real Daphne processes: a conversation moves the counters, two processes add
up in one scrape, JSON log lines carry the session of an ingest, readiness names a Redis that is
down while liveness stays up."""

import json
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect

from sessions_app import credentials
from sessions_app.models import AvatarSession
from tests.conftest import free_port
from tests.waiting import wait_for

CONVERSATION = json.loads((Path(__file__).parent / "fixtures" / "conversation.json").read_text())["events"]
TOKEN = "scrape-token-0123456789"
ACCESS_LOG = re.compile(r'^\S+ - - \[[^]]+\] "')


def scrape(server) -> dict:
    """{(sample name, sorted label items): value} of one scrape."""
    response = httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert response.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(figures: dict, name: str, **labels) -> float:
    return figures.get((name, tuple(sorted(labels.items()))), 0.0)


def moved(before: dict, after: dict, name: str, **labels) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def forwarding(server, session_id):
    url = f"{server.ws_url}/ws/sessions/{session_id}/events/?credential={credentials.mint(session_id)}"
    return connect(url, origin=server.url)


def send(socket, items) -> dict:
    """The server's answer to `items`; a session.ended notice the server sends first is passed over."""
    socket.send(json.dumps({"type": "events", "events": items}))
    while (reply := json.loads(socket.recv(timeout=10)))["type"] == "session.ended":
        pass
    return reply


def page_config(server) -> dict:
    html = httpx.get(f"{server.url}/", timeout=10).text
    return json.loads(re.search(r'<script id="avatar-config" type="application/json">(.*?)</script>', html).group(1))


def test_a_conversation_moves_the_counters_by_what_it_did(make_daphne_server):
    server = make_daphne_server(env={"METRICS_TOKEN": TOKEN})
    before = scrape(server)
    session_id = page_config(server)["session_id"]  # one token minted at the emulator
    with forwarding(server, session_id) as socket:
        assert send(socket, CONVERSATION[:10])["type"] == "ack"
        during = scrape(server)
        assert send(socket, CONVERSATION[5:])["type"] == "ack"  # 5 of them sent again
        bad = {"seq": 999, "source": "nobody", "event": {"event_type": "x"}}
        assert send(socket, [bad])["code"] == "bad_event"
    assert moved(before, during, "avatar_site_open_sockets", kind="forwarding") == 1

    def two_broadcasts():  # the live feed goes out after the acks (on Redis at most every INGEST_FEED_PERIOD)
        figures = scrape(server)
        return figures if moved(before, figures, "avatar_site_feed_lag_seconds_count") >= 2 else None

    after = wait_for(two_broadcasts, 10, "two live-feed broadcasts")
    assert moved(before, after, "avatar_site_events_stored_total") == len(CONVERSATION)
    assert moved(before, after, "avatar_site_events_duplicate_total") == 5
    assert moved(before, after, "avatar_site_events_rejected_total", reason="bad_event") == 1
    assert moved(before, after, "avatar_site_mint_seconds_count") == 1
    assert moved(before, after, "avatar_site_liveavatar_calls_total", endpoint="POST /v1/sessions/token", status="200")
    assert moved(before, after, "avatar_site_ingest_round_seconds_count") >= 2
    # The conversation ended (session.stopped): nothing of it is live any more.
    assert value(after, "avatar_site_live_sessions", profile="default", status="active") == 0
    assert value(during, "avatar_site_live_sessions", profile="default", status="active") == 1


def test_two_processes_add_up_in_one_scrape(make_daphne_server, tmp_path):
    env = {"METRICS_TOKEN": TOKEN, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    a, b = make_daphne_server(env=env), make_daphne_server(env=env)
    first, second = AvatarSession.objects.create(), AvatarSession.objects.create()
    with forwarding(a, first.id) as socket:
        assert send(socket, CONVERSATION[:7])["type"] == "ack"
    with forwarding(b, second.id) as socket:
        assert send(socket, CONVERSATION[:12])["type"] == "ack"
    for server in (a, b):  # either process answers for both
        figures = scrape(server)
        assert value(figures, "avatar_site_events_stored_total") == 19
        assert value(figures, "avatar_site_processes") == 2
    b.kill()
    figures = scrape(a)
    assert value(figures, "avatar_site_processes") == 1  # the killed one's live gauges are dropped
    assert value(figures, "avatar_site_events_stored_total") == 19  # what it counted stays counted


def test_json_log_lines_carry_the_session_of_an_ingest(make_daphne_server):
    server = make_daphne_server(env={"LOG_FORMAT": "json"})
    session = AvatarSession.objects.create()
    with forwarding(server, session.id) as socket:
        assert send(socket, CONVERSATION[:3])["type"] == "ack"
    deadline = time.monotonic() + 10
    while "forwarding socket closed" not in server.log_path.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    text = server.log_path.read_text()
    # Daphne's own first lines come before Django configures logging, and its access log (stdout,
    # merged into this file here) is its own format; every other line is JSON.
    lines = text[text.index("\n{") + 1 :].splitlines()
    lines = [json.loads(line) for line in lines if line.strip() and not ACCESS_LOG.match(line)]
    ours = [line for line in lines if line["logger"] == "sessions_app.consumers"]
    assert [line["message"] for line in ours] == ["forwarding socket opened", "forwarding socket closed (code 1000)"]
    assert all(line["session_id"] == str(session.id) and line["level"] == "INFO" for line in ours)
    assert all(isinstance(line["process"], int) and line["time"].endswith("+00:00") for line in ours)


@pytest.fixture
def private_redis(tmp_path):
    """A Redis server of this test's own, on a free port; stop() and start() it at will."""
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed (make services installs it)")
    port = free_port()
    command = [shutil.which("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    command += ["--appendonly", "no", "--dir", str(tmp_path)]

    class Redis:
        address = f"127.0.0.1:{port}"
        url = f"redis://127.0.0.1:{port}/0"
        process = None

        def start(self):
            self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
            deadline = time.monotonic() + 10
            while subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).stdout != b"PONG\n":
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

        def stop(self):
            self.process.terminate()
            self.process.wait(10)

    redis = Redis()
    redis.start()
    yield redis
    if redis.process.poll() is None:
        redis.stop()


def test_readiness_names_a_redis_that_is_down_while_liveness_stays_up(make_daphne_server, private_redis):
    server = make_daphne_server(env={"REDIS_URL": private_redis.url})
    ready = httpx.get(f"{server.url}/healthz/ready", timeout=10)
    assert ready.status_code == 200, ready.text
    assert ready.json()["channel_layer"] == {"status": "ok", "detail": f"Redis at {private_redis.address}"}
    assert httpx.head(f"{server.url}/healthz/ready", timeout=10).status_code == 200

    private_redis.stop()
    ready = httpx.get(f"{server.url}/healthz/ready", timeout=10)
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "unavailable" and body["channel_layer"]["status"] == "down"
    assert body["channel_layer"]["detail"].startswith(f"Redis at {private_redis.address} unreachable")
    assert body["database"]["status"] == "ok" and body["liveavatar"]["status"] == "ok"
    assert httpx.head(f"{server.url}/healthz/ready", timeout=10).status_code == 503
    live = httpx.get(f"{server.url}/healthz/live", timeout=10)
    assert live.status_code == 200 and live.json() == {"status": "ok"}
    assert httpx.head(f"{server.url}/healthz/live", timeout=10).status_code == 200

    private_redis.start()
    deadline = time.monotonic() + 20
    while httpx.get(f"{server.url}/healthz/ready", timeout=10).status_code != 200:
        assert time.monotonic() < deadline, "readiness did not come back with Redis"
        time.sleep(0.5)


def test_readiness_reports_liveavatar_down_without_taking_the_process_out(make_daphne_server):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        nobody = f"http://127.0.0.1:{closed.getsockname()[1]}"  # bound, never listening: refused
        server = make_daphne_server(env={"LIVEAVATAR_EMULATOR_URL": nobody})
        ready = httpx.get(f"{server.url}/healthz/ready", timeout=10)
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["status"] == "degraded" and body["database"]["status"] == body["channel_layer"]["status"] == "ok"
    assert body["liveavatar"]["status"] == "down"
    assert body["liveavatar"]["detail"].startswith("LiveAvatar emulator unreachable")
