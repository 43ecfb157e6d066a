"""Staff review in the admin: search by a spoken word, the evidence page, exports, ending a session, cost."""

import csv
import io
import json

import pytest
from django.urls import reverse
from django.utils import timezone

from sessions_app.emulator.models import EmulatedSession
from sessions_app.models import AvatarSession, SessionEvent, SessionStatus, TranscriptEntry
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)

CHANGELIST = reverse("admin:sessions_app_avatarsession_changelist")
CONVERSATION = factories.CONVERSATION


def other_session(text: str) -> AvatarSession:
    session = AvatarSession.objects.create(status=SessionStatus.ENDED, started_at=timezone.now())
    TranscriptEntry.objects.create(session=session, position=1, speaker="user", text=text)
    return session


def test_search_finds_a_session_by_a_word_said_in_it(admin_client):
    wanted = factories.recorded_session()
    other_session("Do you sell umbrellas?")
    response = admin_client.get(CHANGELIST, {"q": "Saturdays"})
    assert list(response.context["cl"].result_list) == [wanted]


def test_the_session_page_shows_the_conversation_and_the_event_timeline(admin_client):
    session = factories.recorded_session()
    page = admin_client.get(reverse("admin:sessions_app_avatarsession_change", args=[session.pk])).content.decode()
    assert "What are your hours?" in page and "We&#x27;re open nine to five, Monday to Friday." in page
    assert page.count('class="avatar') == 4 and "interrupted" in page
    assert "session.state_updated" in page and "client.keepalive" in page  # every event, unknown ones too
    xss = other_session("<script>alert(1)</script>")
    page = admin_client.get(reverse("admin:sessions_app_avatarsession_change", args=[xss.pk])).content.decode()
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page


def export(admin_client, action, *sessions):
    return admin_client.post(CHANGELIST, {"action": action, "_selected_action": [s.pk for s in sessions]})


def test_json_export_parses_and_holds_transcript_and_events(admin_client):
    first, second = factories.recorded_session(), other_session("Do you sell umbrellas?")
    response = export(admin_client, "export_json", first, second)
    assert response["Content-Disposition"] == 'attachment; filename="sessions.json"'
    data = {s["id"]: s for s in json.loads(response.content)["sessions"]}
    assert [e["text"] for e in data[str(first.id)]["transcript"]][:2] == [
        "Hello! I'm Wayne. How can I help you today?",
        "What are your hours?",
    ]
    assert len(data[str(first.id)]["events"]) == len(CONVERSATION)
    assert data[str(first.id)]["end_reason"] == "USER_CLOSED"
    assert data[str(second.id)]["transcript"][0]["text"] == "Do you sell umbrellas?"


def test_json_export_has_the_api_shapes(admin_client, client):
    session = factories.recorded_session()
    exported = json.loads(export(admin_client, "export_json", session).content)["sessions"][0]
    bearer = factories.bearer(factories.api_key("sessions:read"))
    api = f"/api/v1/sessions/{session.id}"
    assert {k: v for k, v in exported.items() if k not in ("transcript", "events")} == client.get(api, **bearer).json()
    assert exported["transcript"] == client.get(f"{api}/transcript", **bearer).json()["entries"]
    assert exported["events"] == client.get(f"{api}/events?page_size=200", **bearer).json()["items"]


def test_csv_export_parses_and_holds_the_transcript(admin_client):
    session = factories.recorded_session()
    response = export(admin_client, "export_csv", session)
    assert response["Content-Disposition"] == f'attachment; filename="session-{session.id}.csv"'
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    # The interrupted answer: what the visitor heard, and what the avatar meant to say.
    assert (rows[2]["speaker"], rows[2]["text"]) == ("avatar", "We're open nine to five,")
    assert rows[2]["intended_text"] == "We're open nine to five, Monday to Friday."
    assert (rows[2]["interrupted"], rows[2]["latency_ms"]) == ("True", "900")
    assert len(rows) == 7


def test_text_export_reads_as_a_conversation(admin_client):
    session = factories.recorded_session()
    text = export(admin_client, "export_text", session).content.decode()
    assert "Visitor: What are your hours?\nAvatar: We're open nine to five, [interrupted]" in text


def test_end_live_session_stops_it_at_liveavatar_and_records_the_staff_member(admin_client):
    remote = EmulatedSession.objects.create(status=EmulatedSession.STARTED, started_at=timezone.now())
    session = AvatarSession.objects.create(
        status=SessionStatus.ACTIVE, started_at=timezone.now(), liveavatar_session_id=str(remote.id)
    )
    export(admin_client, "end_live_session", session)
    session.refresh_from_db()
    assert (session.status, session.end_reason, session.ended_by) == (SessionStatus.ENDED, "STAFF_ENDED", "staff:admin")
    remote.refresh_from_db()
    assert remote.status == EmulatedSession.ENDED  # the stop reached LiveAvatar (the emulator)


def test_deleting_a_session_deletes_its_events_and_transcript(admin_client):
    session = factories.recorded_session()
    response = admin_client.post(reverse("admin:sessions_app_avatarsession_delete", args=[session.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert (SessionEvent.objects.count(), TranscriptEntry.objects.count()) == (0, 0)


def test_sessions_are_not_editable(admin_client):
    session = factories.recorded_session()
    url = reverse("admin:sessions_app_avatarsession_change", args=[session.pk])
    admin_client.post(url, {"status": "active", "end_reason": "forged"})
    session.refresh_from_db()
    assert (session.status, session.end_reason) == (SessionStatus.ENDED, "USER_CLOSED")


def count_changelist_queries(admin_client, django_assert_max_num_queries, expected: int):
    with django_assert_max_num_queries(expected) as captured:
        assert admin_client.get(CHANGELIST).status_code == 200
    return len(captured)


def test_the_changelist_costs_the_same_with_5_or_50_sessions(admin_client, django_assert_max_num_queries):
    for _ in range(5):
        factories.recorded_session()
    few = count_changelist_queries(admin_client, django_assert_max_num_queries, 50)
    for _ in range(45):
        AvatarSession.objects.create(status=SessionStatus.ENDED, started_at=timezone.now(), turn_count=3)
    many = count_changelist_queries(admin_client, django_assert_max_num_queries, 50)
    assert few == many
