"""/api/v1/webhooks: managing endpoints over REST, the secret shown once, rotation, the schema."""

import json
import logging

import pytest

from profiles.models import AvatarProfile
from sessions_app.models import ApiKey, AvatarSession, SessionStatus
from webhooks import delivery
from webhooks.models import Delivery, Endpoint

pytestmark = pytest.mark.django_db


@pytest.fixture
def call(client):
    keys = {
        "hooks": ApiKey.create("hooks", ["webhooks:write"])[1],
        "sessions": ApiKey.create("sessions", ["sessions:read", "sessions:write"])[1],
    }

    def call(method, path, body=None, key="hooks"):
        kwargs = {"HTTP_AUTHORIZATION": f"Bearer {keys[key]}"}
        if body is not None:
            kwargs.update(data=json.dumps(body), content_type="application/json")
        return getattr(client, method)(f"/api/v1/webhooks{path}", **kwargs)

    return call


NEW = {"url": "https://crm.example.com/hooks", "events": ["session.ended", "session.started"]}


def test_it_creates_an_endpoint_and_shows_its_secret_once(call):
    response = call("post", "", NEW)
    assert response.status_code == 201
    body = response.json()
    assert body["secret"].startswith("whsec_")
    assert body["events"] == ["session.ended", "session.started"]
    assert Endpoint.objects.get(pk=body["id"]).created_by == "api:hooks"
    assert "secret" not in call("get", f"/{body['id']}").json()
    assert all("secret" not in endpoint for endpoint in call("get", "").json())


def test_it_needs_the_webhooks_scope(call):
    response = call("post", "", NEW, key="sessions")
    assert response.status_code == 403
    assert "webhooks:write" in response.json()["message"]
    assert not Endpoint.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        {**NEW, "url": "ftp://crm.example.com/hooks"},
        {**NEW, "url": "not a url"},
        {**NEW, "url": "https://crm example.com/hooks"},
        {**NEW, "events": []},
        {**NEW, "events": ["session.paused"]},
        {**NEW, "secret": "whsec_mine"},
    ],
)
def test_it_refuses_bad_endpoints_and_stores_nothing(call, body):
    response = call("post", "", body)
    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"
    assert not Endpoint.objects.exists()


def test_it_rotates_the_secret_and_signs_with_both_for_a_while(call):
    created = call("post", "", NEW).json()
    rotated = call("post", f"/{created['id']}/rotate-secret")
    assert rotated.status_code == 200
    assert rotated.json()["secret"] not in (created["secret"], "")
    endpoint = Endpoint.objects.get()
    assert endpoint.signing_secrets() == [rotated.json()["secret"], created["secret"]]


def test_it_changes_deletes_and_reenables_endpoints(call):
    created = call("post", "", NEW).json()
    Endpoint.objects.filter(pk=created["id"]).update(
        active=False, consecutive_failures=15, disabled_reason="Disabled after 15 failed deliveries in a row."
    )
    changed = call("patch", f"/{created['id']}", {"active": True, "events": ["session.ended"]})
    assert changed.status_code == 200
    assert changed.json() | {"created_at": None, "disabled_at": None} == {
        "id": created["id"],
        "url": NEW["url"],
        "events": ["session.ended"],
        "profile": "",
        "active": True,
        "consecutive_failures": 0,
        "disabled_at": None,
        "disabled_reason": "",
        "created_at": None,
    }
    assert call("delete", f"/{created['id']}").status_code == 204
    assert call("get", f"/{created['id']}").status_code == 404
    assert call("delete", f"/{created['id']}").json() == {"error": "not_found", "message": "No such webhook endpoint."}


def test_the_openapi_schema_documents_the_webhooks_api(client):
    schema = client.get("/api/v1/openapi.json").json()
    assert set(schema["paths"]["/api/v1/webhooks"]) == {"get", "post"}
    assert set(schema["paths"]["/api/v1/webhooks/{endpoint_id}"]) == {"get", "patch", "delete"}
    assert "/api/v1/webhooks/{endpoint_id}/rotate-secret" in schema["paths"]
    assert "secret" in schema["components"]["schemas"]["EndpointSecretOut"]["properties"]


def test_a_failing_delivery_is_logged_without_its_secret(call, caplog):
    created = call("post", "", {**NEW, "url": "http://127.0.0.1:9/hooks"}).json()  # nothing listens on port 9
    session = AvatarSession.objects.create(status=SessionStatus.CREATED)
    with caplog.at_level(logging.DEBUG):
        session.status = SessionStatus.STARTED
        [queued] = delivery.record_event(session, "session.started")
        assert delivery.attempt(str(queued.pk), 1) == "failed"
    queued.refresh_from_db()
    assert queued.last_error.startswith("Could not connect")
    assert queued.webhook_id in caplog.text
    assert created["secret"] not in caplog.text
    assert created["secret"].removeprefix("whsec_") not in caplog.text


def test_a_delivery_whose_last_attempt_never_finished_is_marked_failed(call, settings):
    settings.WEBHOOK_RETRY_DELAYS = [0.1]  # two attempts in all
    call("post", "", {**NEW, "url": "http://127.0.0.1:9/hooks"})
    session = AvatarSession.objects.create(status=SessionStatus.STARTED)
    [queued] = delivery.record_event(session, "session.started")
    Delivery.objects.filter(pk=queued.pk).update(attempts=2, payload={"type": "session.started"})
    # What a worker killed during attempt 2 left queued.
    assert delivery.attempt(str(queued.pk), 3) == "failed"
    queued.refresh_from_db()
    assert (queued.status, queued.last_error) == ("failed", "Gave up after 2 attempts.")


def test_staff_send_a_failed_delivery_again_with_the_same_webhook_id(call, admin_client, settings):
    from django_tasks_db.models import DBTaskResult

    call("post", "", {**NEW, "url": "http://127.0.0.1:9/hooks"})
    session = AvatarSession.objects.create(status=SessionStatus.STARTED)
    [failed] = delivery.record_event(session, "session.started")
    Delivery.objects.filter(pk=failed.pk).update(status="failed", attempts=8, payload={"type": "session.started"})
    DBTaskResult.objects.all().delete()

    response = admin_client.post(
        "/admin/webhooks/delivery/", {"action": "send_again", "_selected_action": [str(failed.pk)]}, follow=True
    )
    assert "Queued 1 deliveries to be sent again." in response.content.decode()
    again = Delivery.objects.get()
    assert (again.status, again.attempts, again.webhook_id) == ("pending", 0, failed.webhook_id)
    assert DBTaskResult.objects.get().args_kwargs["args"] == [str(failed.pk), 1]
    assert delivery.attempt(str(failed.pk), 1) == "failed"  # nothing listens: tried, not refused
    assert Delivery.objects.get().attempts == 1


def test_an_endpoint_for_one_profile_gets_only_that_profiles_sessions(call):
    shop = AvatarProfile.objects.create(slug="shop", name="Shop")
    for_shop = call("post", "", {**NEW, "profile": "shop"}).json()
    for_all = call("post", "", NEW).json()
    of_shop = AvatarSession.objects.create(status=SessionStatus.STARTED, profile=shop)
    of_default = AvatarSession.objects.create(status=SessionStatus.STARTED, profile=AvatarProfile.objects.default())
    to = {s.pk: {d.endpoint_id for d in delivery.record_event(s, "session.started")} for s in (of_shop, of_default)}
    assert to == {of_shop.pk: {for_shop["id"], for_all["id"]}, of_default.pk: {for_all["id"]}}
