"""Webhook deliveries end to end: the task worker as its own process, a loopback receiver verifying
signatures with the standardwebhooks library, and the faults a delivery must survive."""

import json

import pytest

from sessions_app.models import ApiKey, AvatarSession
from tests.waiting import wait_for
from tests.webhook_receiver import Receiver, Worker
from webhooks.models import Delivery, DeliveryStatus, Endpoint

pytestmark = pytest.mark.django_db(transaction=True)

PERSONAL = ("jane.doe@example.com", "(212) 555-0199", "4111 1111 1111 1111")


@pytest.fixture
def api(client):
    key = ApiKey.create("crm", ["sessions:read", "sessions:write", "webhooks:write"])[1]

    def call(method, path, body=None):
        kwargs = {"HTTP_AUTHORIZATION": f"Bearer {key}"}
        if body is not None:
            kwargs.update(data=json.dumps(body), content_type="application/json")
        return getattr(client, method)(f"/api/v1{path}", **kwargs)

    return call


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.stop()


@pytest.fixture
def make_worker():
    workers = []

    def make(**env) -> Worker:
        worker = Worker(env).start()
        workers.append(worker)
        return worker

    yield make
    for worker in workers:
        worker.stop()


def subscribe(api, receiver, events=("session.started", "session.ended")) -> Endpoint:
    response = api("post", "/webhooks", {"url": receiver.url, "events": list(events)})
    assert response.status_code == 201
    receiver.secret = response.json()["secret"]
    return Endpoint.objects.get(pk=response.json()["id"])


def event(seq, kind, source="server", **fields):
    return {"seq": seq, "ts": 1764081234000 + seq * 100, "source": source, "event": {"event_type": kind, **fields}}


def hold_conversation(api) -> str:
    """Create a session, forward a conversation with personal data in it, stop it; its id."""
    session_id = api("post", "/sessions", {}).json()["session_id"]
    said = f"I am {PERSONAL[0]}, call {PERSONAL[1]}, my card is {PERSONAL[2]}"
    events = [
        event(1, "client.started", "client"),
        event(2, "avatar.speak_started"),
        event(3, "avatar.transcription", text="Hello, how can I help?"),
        event(4, "avatar.speak_ended"),
        event(5, "user.speak_started"),
        event(6, "user.transcription", text=said),
        event(7, "user.speak_ended"),
    ]
    assert api("post", f"/sessions/{session_id}/events", {"events": events}).json()["acked"] == list(range(1, 8))
    assert api("post", f"/sessions/{session_id}/stop").status_code == 200
    return session_id


def test_it_delivers_a_rest_conversation_signed_with_the_stored_redacted_transcript(api, receiver, make_worker):
    subscribe(api, receiver.start())
    make_worker()
    session_id = hold_conversation(api)

    wait_for(lambda: len(receiver.received) == 2, what="session.started and session.ended")
    assert receiver.refused == []
    assert receiver.types() == ["session.started", "session.ended"]
    started, ended = (payload for _, payload in receiver.received)
    assert started["data"]["session"]["id"] == ended["data"]["session"]["id"] == session_id
    assert ended["data"]["end_reason"] == "API_ENDED"  # stopped over REST
    assert ended["data"]["metrics"]["turn_count"] == 2
    stored = api("get", f"/sessions/{session_id}/transcript").json()["entries"]
    assert ended["data"]["transcript"] == stored
    assert stored[1]["text"] == "I am [email], call [phone], my card is [card]"
    assert ended["data"]["redactions"] == {"email": 1, "phone": 1, "card": 1}
    assert not any(secret in json.dumps(receiver.received) for secret in PERSONAL)


def test_a_worker_killed_mid_delivery_delivers_after_a_restart_with_the_same_webhook_id(api, receiver, make_worker):
    subscribe(api, receiver.start(), events=["session.started"])
    receiver.hold.clear()  # the first request waits, unanswered, while the worker is killed
    worker = make_worker()
    api(
        "post",
        "/sessions/{}/events".format(api("post", "/sessions", {}).json()["session_id"]),
        {"events": [event(1, "client.started", "client")]},
    )
    wait_for(receiver.arrived.is_set, what="the first attempt")
    delivery = Delivery.objects.get()
    worker.kill()
    receiver.hold.set()
    make_worker()

    wait_for(
        lambda: Delivery.objects.filter(status=DeliveryStatus.DELIVERED).exists(), what="the delivery after the restart"
    )
    # The receiver saw the killed attempt (its answer went nowhere) and the one after the restart.
    assert receiver.requests == 2
    assert {webhook_id for webhook_id, _ in receiver.received} == {delivery.webhook_id}
    assert Delivery.objects.get().attempts == 2


def test_everything_sent_while_the_receiver_was_down_arrives_once_it_is_up(api, receiver, make_worker):
    subscribe(api, receiver)  # not listening yet: every attempt is refused
    make_worker()
    sessions = [hold_conversation(api) for _ in range(3)]
    wait_for(lambda: Delivery.objects.filter(attempts__gte=2).count() == 6, what="every delivery to fail at least once")
    receiver.start()

    wait_for(lambda: Delivery.objects.filter(status=DeliveryStatus.DELIVERED).count() == 6, timeout=30)
    got = {(payload["type"], payload["data"]["session"]["id"]) for _, payload in receiver.received}
    assert got == {(kind, sid) for sid in sessions for kind in ("session.started", "session.ended")}
    assert {webhook_id for webhook_id, _ in receiver.received} == {d.webhook_id for d in Delivery.objects.all()}


def test_an_endpoint_answering_500_forever_is_disabled_after_the_stated_failures(api, receiver, make_worker, client):
    receiver.status = 500
    endpoint = subscribe(api, receiver.start(), events=["session.started"])
    make_worker(WEBHOOK_DISABLE_AFTER_FAILURES="3")
    hold_conversation(api)

    wait_for(lambda: not Endpoint.objects.get(pk=endpoint.pk).active, what="the endpoint to be disabled")
    endpoint.refresh_from_db()
    assert endpoint.consecutive_failures == 3
    assert receiver.requests == 3
    delivery = Delivery.objects.get()
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.last_status_code == 500

    # Staff see it on the dashboard.
    from django.contrib.auth.models import User

    client.force_login(User.objects.create_user("staff", is_staff=True))
    page = client.get("/dashboard/").content.decode()
    assert f"Webhooks to <strong>{receiver.url}</strong> are stopped" in page
    assert "Disabled after 3 failed deliveries in a row." in page
    assert AvatarSession.objects.count() == 1


def test_two_workers_share_the_queue_and_send_each_delivery_once(api, receiver, make_worker):
    subscribe(api, receiver.start())
    make_worker(), make_worker()
    sessions = [hold_conversation(api) for _ in range(4)]

    wait_for(lambda: len(receiver.received) >= 8, what="every delivery")
    webhook_ids = [webhook_id for webhook_id, _ in receiver.received]
    assert sorted(webhook_ids) == sorted(d.webhook_id for d in Delivery.objects.all())
    assert {payload["data"]["session"]["id"] for _, payload in receiver.received} == set(sessions)
