"""Live control across processes: a command sent to process B's REST API reaches the page whose
forwarding socket is on process A (Redis channel layer), and A's answer comes back to B."""

import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from websockets.sync.client import connect

from control.models import ControlCommand, Outcome
from sessions_app import credentials
from sessions_app.models import ApiKey, AvatarSession, SessionStatus


def test_a_command_sent_to_process_b_reaches_a_page_forwarding_to_process_a(make_daphne_server):
    a, b = make_daphne_server(), make_daphne_server()
    key = ApiKey.create("crm", ["sessions:control"])[1]
    session = AvatarSession.objects.create(status=SessionStatus.ACTIVE)

    url = f"{a.ws_url}/ws/sessions/{session.id}/events/?credential={credentials.mint(session.id)}"
    with connect(url, origin=a.url) as page, ThreadPoolExecutor(1) as pool:
        sent = pool.submit(
            httpx.post,
            f"{b.url}/api/v1/sessions/{session.id}/commands",
            json={"command": "speak_text", "text": "Hello from B"},
            headers={"Authorization": f"Bearer {key}"},
            timeout=15,
        )
        command = json.loads(page.recv(timeout=10))
        assert (command["type"], command["command"], command["text"]) == ("control", "speak_text", "Hello from B")
        page.send(
            json.dumps({"type": "control_result", "command_id": command["command_id"], "ok": True, "event_id": "e-a"})
        )
        response = sent.result(timeout=15)

    assert response.status_code == 202, response.text
    assert response.json()["event_id"] == "e-a"
    record = ControlCommand.objects.get()
    assert (record.origin, record.outcome, record.event_id) == ("api:crm", Outcome.DELIVERED, "e-a")


def test_a_page_closed_on_process_a_gives_409_on_process_b(make_daphne_server):
    a, b = make_daphne_server(), make_daphne_server()
    key = ApiKey.create("crm", ["sessions:control"])[1]
    session = AvatarSession.objects.create(status=SessionStatus.ACTIVE)
    url = f"{a.ws_url}/ws/sessions/{session.id}/events/?credential={credentials.mint(session.id)}"
    with connect(url, origin=a.url):
        pass
    deadline = time.monotonic() + 10  # until process A has counted the socket closed
    while AvatarSession.objects.get(pk=session.pk).open_connections and time.monotonic() < deadline:
        time.sleep(0.05)
    response = httpx.post(
        f"{b.url}/api/v1/sessions/{session.id}/commands",
        json={"command": "interrupt"},
        headers={"Authorization": f"Bearer {key}"},
        timeout=15,
    )
    assert response.status_code == 409, response.text
    assert response.json()["message"] == "The visitor's page is not connected: it was closed or lost its connection."
