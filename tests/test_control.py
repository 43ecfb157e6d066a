"""Live control over the real consumer and channel layer: a command sent to the REST API reaches the
session's forwarding socket, the page's answer decides the status, every attempt is recorded, and
who may send is checked."""

import asyncio
import json
import subprocess

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import Permission, User
from django.test import AsyncClient

from avatar_site.asgi import application
from control.models import ControlCommand, Outcome
from sessions_app import credentials
from sessions_app.ingest import store_batch
from sessions_app.models import ApiKey, AvatarSession, SessionStatus
from tests.waiting import transcript_caught_up

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def control_key():
    return ApiKey.create("crm", ["sessions:control"])[1]


async def live_session(**fields) -> AvatarSession:
    return await AvatarSession.objects.acreate(status=SessionStatus.ACTIVE, **fields)


async def open_page(session) -> WebsocketCommunicator:
    path = f"/ws/sessions/{session.pk}/events/?credential={credentials.mint(session.pk)}"
    page = WebsocketCommunicator(application, path, headers=[(b"origin", b"http://127.0.0.1")])
    connected, _ = await page.connect()
    assert connected
    return page


def send(session, body, **headers):
    return AsyncClient().post(
        f"/api/v1/sessions/{session.pk}/commands", json.dumps(body), content_type="application/json", headers=headers
    )


def bearer(key):
    return {"Authorization": f"Bearer {key}"}


async def answer(page, **result):
    """The page receives the relayed command and answers it; returns what it received."""
    command = json.loads(await page.receive_from(timeout=5))
    await page.send_to(text_data=json.dumps({"type": "control_result", "command_id": command["command_id"], **result}))
    return command


async def test_it_relays_a_command_to_the_page_and_answers_202_once_the_page_confirms(control_key):
    session = await live_session()
    page = await open_page(session)
    request = asyncio.ensure_future(
        send(session, {"command": "speak_text", "text": " Say this "}, **bearer(control_key))
    )
    received = await answer(page, ok=True, event_id="ev-1")
    response = await request

    assert received == {
        "type": "control",
        "command_id": received["command_id"],
        "session_id": str(session.pk),
        "command": "speak_text",
        "text": "Say this",
        "sender": "api",  # the page never learns the key's name
    }
    assert response.status_code == 202
    assert response.json()["event_id"] == "ev-1"
    record = await ControlCommand.objects.aget(pk=received["command_id"])
    assert (record.origin, record.outcome, record.event_id, record.text) == (
        "api:crm",
        Outcome.DELIVERED,
        "ev-1",
        "Say this",
    )
    await page.disconnect()


async def test_staff_with_the_permission_send_from_their_browser_session():
    user = await sync_to_async(User.objects.create_user)("alice", password="pw", is_staff=True)
    await sync_to_async(user.user_permissions.add)(await Permission.objects.aget(codename="control_session"))
    session = await live_session()
    page = await open_page(session)
    client = AsyncClient(enforce_csrf_checks=True)
    await client.aforce_login(user)
    client.cookies["csrftoken"] = "a" * 32
    request = asyncio.ensure_future(
        client.post(
            f"/api/v1/sessions/{session.pk}/commands",
            json.dumps({"command": "interrupt"}),
            content_type="application/json",
            headers={"X-CSRFToken": "a" * 32},
        )
    )
    received = await answer(page, ok=True, event_id="ev-2")
    assert (await request).status_code == 202
    assert received["sender"] == "staff"
    assert (await ControlCommand.objects.aget()).origin == "staff:alice"
    await page.disconnect()


async def test_the_page_refusing_gives_409_with_its_words(control_key):
    session = await live_session()
    page = await open_page(session)
    request = asyncio.ensure_future(send(session, {"command": "start_listening"}, **bearer(control_key)))
    await answer(page, ok=False, message="The conversation is not live (it is ending).")
    response = await request
    assert response.status_code == 409
    assert response.json() == {
        "error": "not_live",
        "message": "The visitor's page refused the command: The conversation is not live (it is ending).",
    }
    assert (await ControlCommand.objects.aget()).outcome == Outcome.REFUSED
    await page.disconnect()


async def test_a_page_that_does_not_answer_gives_504(control_key, settings):
    settings.CONTROL_CONFIRM_SECONDS = 0.3
    session = await live_session()
    page = await open_page(session)
    response = await send(session, {"command": "speak_response", "text": "Hours?"}, **bearer(control_key))
    assert response.status_code == 504
    assert response.json()["message"].startswith("The visitor's page did not confirm within 0.3 seconds")
    assert (await ControlCommand.objects.aget()).outcome == Outcome.NO_ANSWER
    await page.disconnect()


async def test_no_page_connected_or_an_ended_session_gives_409(control_key):
    gone = await live_session()  # its page closed: no forwarding socket
    response = await send(gone, {"command": "interrupt"}, **bearer(control_key))
    assert response.status_code == 409
    assert response.json()["message"] == "The visitor's page is not connected: it was closed or lost its connection."

    ended = await AvatarSession.objects.acreate(status=SessionStatus.ENDED)
    response = await send(ended, {"command": "speak_text", "text": "Hi"}, **bearer(control_key))
    assert response.status_code == 409
    assert response.json()["message"] == "The conversation is over (it is ended)."
    assert await ControlCommand.objects.acount() == 0  # refused before anything was relayed


async def test_end_ends_the_session_and_records_who(control_key):
    session = await live_session()
    page = await open_page(session)
    request = asyncio.ensure_future(send(session, {"command": "end"}, **bearer(control_key)))
    await answer(page, ok=True, event_id="ev-end")
    assert (await request).status_code == 202
    await session.arefresh_from_db()
    assert (session.status, session.end_reason) == (SessionStatus.ENDED, "API_ENDED")
    assert (await ControlCommand.objects.aget()).origin == "api:crm"
    await page.disconnect()


async def test_a_page_answer_for_a_command_it_was_not_sent_goes_nowhere(control_key, settings):
    settings.CONTROL_CONFIRM_SECONDS = 0.5
    session = await live_session()
    page = await open_page(session)
    other = await open_page(await live_session())
    request = asyncio.ensure_future(send(session, {"command": "interrupt"}, **bearer(control_key)))
    command = json.loads(await page.receive_from(timeout=5))
    # Another session's page cannot confirm (or refuse) it: it never received it.
    await other.send_to(
        text_data=json.dumps({"type": "control_result", "command_id": command["command_id"], "ok": True})
    )
    assert (await request).status_code == 504
    await page.disconnect()
    await other.disconnect()


@pytest.mark.parametrize(
    "body, problem",
    [
        ({"command": "speak_text"}, "speak_text.text: Field required"),
        ({"command": "speak_text", "text": "   "}, "text must say something: it is empty or only spaces"),
        ({"command": "interrupt", "text": "no"}, "interrupt.text: Extra inputs are not permitted"),
        ({"command": "dance"}, "Input tag 'dance' found using 'command' does not match any of the expected tags"),
        ({"command": "speak_text", "text": "x" * 1001}, "at most 1000 characters"),
    ],
)
async def test_bad_commands_are_refused_with_422_and_nothing_is_sent(control_key, body, problem):
    session = await live_session()
    response = await send(session, body, **bearer(control_key))
    assert response.status_code == 422
    assert problem in response.json()["message"]
    assert await ControlCommand.objects.acount() == 0


# Every character some regex flavour takes for white space, and NUL.
BLANKS = [c for c in map(chr, range(0x3001)) if c.isspace()] + ["\ufeff", "\x00"]


def ecmascript_matches(pattern: str, texts: list[str]) -> list[bool]:
    """Whether each text matches a JSON Schema pattern as an ECMAScript engine (node) reads it."""
    script = "const [p, t] = JSON.parse(require('fs').readFileSync(0)); console.log(JSON.stringify(t.map(x => new RegExp(p, 'u').test(x))))"  # noqa: E501
    done = subprocess.run(["node", "-e", script], input=json.dumps([pattern, texts]), capture_output=True, text=True)
    return json.loads(done.stdout)


async def test_text_of_blank_characters_only_is_refused_as_the_published_schema_says(control_key):
    session = await live_session()
    for blank in BLANKS:
        response = await send(session, {"command": "speak_text", "text": blank * 3}, **bearer(control_key))
        assert response.status_code == 422, repr(blank)
        assert "text must say something" in response.json()["message"]
    schema = (await AsyncClient().get("/api/v1/openapi.json")).json()
    pattern = schema["components"]["schemas"]["SpeakIn"]["properties"]["text"]["pattern"]
    assert ecmascript_matches(pattern, [b * 3 for b in BLANKS]) == [False] * len(BLANKS)
    assert ecmascript_matches(pattern, [" hello ", "\x1eok"]) == [True, True]
    assert await ControlCommand.objects.acount() == 0


async def test_commands_are_rate_limited_per_conversation(control_key, settings):
    settings.CONTROL_RATE_PER_MINUTE = 2
    session = await live_session(open_connections=1)
    await ControlCommand.objects.acreate(session=session, command="interrupt", origin="api:crm")
    await ControlCommand.objects.acreate(session=session, command="interrupt", origin="api:crm")
    response = await send(session, {"command": "interrupt"}, **bearer(control_key))
    assert response.status_code == 429
    assert response.json()["message"] == "At most 2 commands a minute per conversation."


async def test_who_may_not_send_is_refused():
    session = await live_session(open_connections=1)
    reader = (await sync_to_async(ApiKey.create)("reader", ["sessions:read", "sessions:write"]))[1]
    response = await send(session, {"command": "interrupt"}, **bearer(reader))
    assert (response.status_code, response.json()["message"]) == (
        403,
        "This API key does not have the sessions:control scope.",
    )
    assert (await send(session, {"command": "interrupt"})).status_code == 401

    async def as_user(**fields):
        user = await sync_to_async(User.objects.create_user)(password="pw", **fields)
        client = AsyncClient(enforce_csrf_checks=True)
        await client.aforce_login(user)
        client.cookies["csrftoken"] = "b" * 32
        return client

    url, body = f"/api/v1/sessions/{session.pk}/commands", json.dumps({"command": "interrupt"})
    visitor = await as_user(username="visitor")  # logged in, not staff
    response = await visitor.post(url, body, content_type="application/json", headers={"X-CSRFToken": "b" * 32})
    assert response.status_code == 401
    staff = await as_user(username="bob", is_staff=True)  # staff, without the permission
    response = await staff.post(url, body, content_type="application/json", headers={"X-CSRFToken": "b" * 32})
    assert (response.status_code, response.json()["message"]) == (
        403,
        "Your account does not have the sessions_app.control_session permission.",
    )
    boss = await as_user(username="carol", is_staff=True, is_superuser=True)
    response = await boss.post(url, body, content_type="application/json")  # no CSRF token
    assert (response.status_code, response.json()["message"]) == (
        403,
        "CSRF check failed: send the X-CSRFToken header.",
    )
    assert await ControlCommand.objects.acount() == 0


async def test_a_line_sent_through_control_is_stored_with_its_origin():
    session = await live_session()
    command = await ControlCommand.objects.acreate(
        session=session, command="speak_text", text="Hi", origin="staff:alice"
    )
    items = [
        (
            1,
            "command",
            {"event_id": "e1", "event_type": "avatar.speak_text", "text": "Hi", "control_id": str(command.pk)},
        ),
        (2, "server", {"event_type": "avatar.transcription", "text": "Hi"}),
        (3, "server", {"event_type": "avatar.speak_started"}),
        (4, "server", {"event_type": "avatar.speak_ended"}),
        # A page claiming a command that is not this session's gets no origin for its line.
        (5, "command", {"event_id": "e5", "event_type": "avatar.speak_text", "text": "Yo", "control_id": "f" * 32}),
        (6, "server", {"event_type": "avatar.transcription", "text": "Yo"}),
        (7, "server", {"event_type": "avatar.speak_started"}),
        (8, "server", {"event_type": "avatar.speak_ended"}),
    ]
    result = await store_batch(
        session, [{"seq": seq, "ts": 1764081234567 + seq, "source": s, "event": e} for seq, s, e in items]
    )
    assert result.acked == list(range(1, 9))
    await transcript_caught_up(session.pk)
    entries = [e async for e in session.transcript.order_by("position")]
    assert [(e.text, e.sent_by, e.speaker_words) for e in entries] == [
        ("Hi", "staff:alice", "Avatar (on behalf of staff member alice)"),
        ("Yo", "", "Avatar"),
    ]


def test_the_admin_page_and_the_exports_show_who_sent_what(admin_client):
    session = AvatarSession.objects.create(status=SessionStatus.ENDED)
    ControlCommand.objects.create(
        session=session, command="speak_text", text="Hi", origin="staff:alice", outcome=Outcome.DELIVERED, event_id="e1"
    )
    ControlCommand.objects.create(session=session, command="end", origin="api:crm", outcome=Outcome.NO_ANSWER)
    session.transcript.create(position=1, speaker="avatar", text="Hi", sent_by="staff:alice")
    page = admin_client.get(f"/admin/sessions_app/avatarsession/{session.pk}/change/").content.decode()
    assert "Avatar (on behalf of staff member alice)" in page
    assert "<td>staff:alice</td>" in page and "<td>api:crm</td>" in page
    assert "The page did not confirm in time" in page
    text = admin_client.get(f"/api/v1/sessions/{session.pk}/transcript?format=text").content.decode()
    assert text == "Avatar (on behalf of staff member alice): Hi\n"
