"""Redaction before storing: the corpus of what must go and what must stay, and every path text is stored by."""

import pytest
from asgiref.sync import async_to_sync
from django.test import override_settings

from privacy.models import SessionRedactions
from privacy.redaction import Policy, redact
from privacy.tasks import count_redactions
from sessions_app import ingest, lifecycle, transcript_catchup
from sessions_app.models import AvatarSession, SessionEvent, TranscriptEntry

US = Policy(enabled=True, kinds=frozenset({"email", "phone", "card", "iban"}), region="US")

# (text, what it must become)
REDACTED = [
    ("write to jane.doe+crm@example.co.uk today", "write to [email] today"),
    ("My email is JOHN_SMITH@mail.example.com.", "My email is [email]."),
    ("call me on (212) 555-0199 after lunch", "call me on [phone] after lunch"),
    ("my cell is 415-555-2671", "my cell is [phone]"),
    ("ring +44 20 7946 0958 from abroad", "ring [phone] from abroad"),
    ("Paris: +33 1 42 68 53 00", "Paris: [phone]"),
    ("card 4111 1111 1111 1111 expires 12/27", "card [card] expires 12/27"),
    ("it's 4242-4242-4242-4242", "it's [card]"),
    ("amex 378282246310005 please", "amex [card] please"),
    ("card 4111 1111 1111 1111 12 25", "card [card] 12 25"),
    ("IBAN GB82 WEST 1234 5698 7654 32 thanks", "IBAN [iban] thanks"),
    ("pay to DE89370400440532013000", "pay to [iban]"),
    ("fr1420041010050500013m02606 is mine", "[iban] is mine"),
    (
        "mail a@b.io, phone 212-555-0199, card 5555 5555 5555 4444",
        "mail [email], phone [phone], card [card]",
    ),
]

# Text that only looks like personal data: it must come out unchanged.
KEPT = [
    "Your order #A-10482 shipped on 2024-03-15 at 14:30.",
    "It costs $1,299.99, or €45.50 a month, 1 234,56 € in France.",
    "Meet me 10:00-11:30 on 15/03/2024 or at 9:45 pm.",
    "Order number 784512, invoice INV-2024-000123, ticket ORD-2024-000123.",
    "The postcode is SW1A 1AA; 90210; 75008 Paris; 10115 Berlin.",
    "4111 1111 1111 1112 fails the Luhn check, and 0000 0000 0000 0000 is no card.",
    "GB82 WEST 1234 5698 7654 33 has a wrong check digit.",
    "Version 3.14.159, room 1204, floor 12, 12 345 678 people, ISBN 978-3-16-148410-0.",
    "Call 555 0134 is too short to be a number; extension 4021.",
    "Tracking 1Z999AA10123456784, at example.com or @handle.",
    "",
]


@pytest.mark.parametrize(("text", "expected"), REDACTED)
def test_it_redacts_personal_data(text, expected):
    assert redact(text, US)[0] == expected


@pytest.mark.parametrize("text", KEPT)
def test_it_keeps_what_only_looks_like_personal_data(text):
    assert redact(text, US) == (text, {})


def test_it_counts_by_kind():
    assert redact(REDACTED[-1][0], US)[1] == {"email": 1, "phone": 1, "card": 1}


def test_it_reads_phone_numbers_in_the_region_set():
    uk_local = "ring 020 7946 0958 tomorrow"
    assert redact(uk_local, US)[0] == uk_local
    assert redact(uk_local, Policy(True, US.kinds, "GB"))[0] == "ring [phone] tomorrow"


def test_it_redacts_only_the_kinds_chosen_and_nothing_when_off():
    text = "a@b.io 212-555-0199"
    assert redact(text, Policy(True, frozenset({"email"}), "US"))[0] == "[email] 212-555-0199"
    assert redact(text, Policy(False, US.kinds, "US"))[0] == text


# Stored paths: the ingest (events, transcript), reconciliation.


def item(seq, kind, source="server", **fields):
    return {"seq": seq, "ts": 1764081234000 + seq * 100, "source": source, "event": {"event_type": kind, **fields}}


@pytest.fixture
def session(db):
    return AvatarSession.objects.create(status="active", liveavatar_session_id="la-1")


def store(session, items):
    """Through the ingest and its transcript catch-up, which has finished when this returns (its
    thread is not left reading while the test's database is flushed)."""

    async def stored():
        await ingest.store_batch(session, items)
        await transcript_catchup.idle()

    async_to_sync(stored)()


def stored_text(session) -> str:
    events = " ".join(str(e.payload) for e in SessionEvent.objects.filter(session=session))
    entries = " ".join(f"{e.text} {e.intended_text}" for e in TranscriptEntry.objects.filter(session=session))
    return f"{events} {entries} {AvatarSession.objects.get(pk=session.pk).error}"


@pytest.mark.django_db(transaction=True)
def test_it_stores_events_and_transcript_redacted(session):
    store(
        session,
        [
            item(1, "user.speak_started"),
            item(2, "user.transcription", text="I'm jane@example.com, card 4111 1111 1111 1111"),
            item(3, "user.speak_ended"),
            item(4, "avatar.speak_response", source="command", text="call me at (212) 555-0199"),
            item(5, "client.error", source="client", stage="media", message="failed for jane@example.com"),
        ],
    )
    text = stored_text(session)
    for secret in ("jane@example.com", "4111 1111 1111 1111", "555-0199"):
        assert secret not in text
    assert [e.text for e in TranscriptEntry.objects.filter(session=session)] == [
        "I'm [email], card [card]",
        "call me at [phone]",
    ]


@pytest.mark.django_db(transaction=True)
def test_it_catches_a_number_split_over_word_by_word_chunks(session):
    # The avatar's chunks are increments: no chunk holds the whole number, the utterance does.
    words = ["Your", "card", "4111", "1111", "1111", "1111", "is", "noted"]
    chunks = [item(2 + i, "avatar.transcription.chunk", text=w) for i, w in enumerate(words)]
    store(session, [item(1, "avatar.speak_started"), *chunks, item(20, "avatar.speak_ended")])
    entry = TranscriptEntry.objects.get(session=session)
    assert entry.text == "Your card [card] is noted"
    # The final text of an utterance arrives whole and is redacted as it is stored.
    store(session, [item(21, "avatar.transcription", text="Your card 4111 1111 1111 1111 is noted")])
    final = SessionEvent.objects.get(session=session, seq=21)
    assert final.payload["text"] == "Your card [card] is noted"
    assert TranscriptEntry.objects.get(session=session).text == "Your card [card] is noted"


@pytest.mark.django_db(transaction=True)
def test_it_redacts_what_reconciliation_adds_and_matches_it_to_ours(session):
    store(session, [item(1, "user.transcription", text="mail me at jane@example.com")])
    utterances = [
        {"role": "user", "transcript": "mail me at jane@example.com", "absolute_timestamp": 1764081234},
        {"role": "avatar", "transcript": "I will write to jane@example.com", "absolute_timestamp": 1764081240},
    ]
    added, _ = lifecycle.add_missing_utterances(session.pk, utterances)
    assert added == 1  # ours matched, though redacted
    assert [e.text for e in TranscriptEntry.objects.filter(session=session)] == [
        "mail me at [email]",
        "I will write to [email]",
    ]


@pytest.mark.django_db(transaction=True)
def test_it_keeps_each_sessions_counts_by_kind(session):
    store(
        session,
        [
            item(1, "user.transcription", text="a@b.io and c@d.io"),
            item(2, "avatar.transcription", text="I'll call 212-555-0199"),
        ],
    )
    count_redactions.call(str(session.pk))
    assert SessionRedactions.objects.get(session=session).counts == {"email": 2, "phone": 1}


@pytest.mark.django_db(transaction=True)
@override_settings(REDACTION_ENABLED=False)
def test_it_stores_text_as_is_when_redaction_is_off(session):
    store(session, [item(1, "user.transcription", text="a@b.io")])
    assert TranscriptEntry.objects.get(session=session).text == "a@b.io"
