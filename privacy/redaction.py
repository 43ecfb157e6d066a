"""Personal data replaced by placeholders before any text is stored.

E-mail addresses become [email], phone numbers [phone] (found by `phonenumbers` in the policy's
region, or in any region when written with +), payment card numbers that pass the Luhn check [card]
and IBANs whose checksum holds [iban]. Dates, times, prices, order numbers and postcodes are left
alone: a number has to be valid as one of these kinds to be replaced.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import phonenumbers
from django.conf import settings

KINDS = ("email", "phone", "card", "iban")
PLACEHOLDERS = {kind: f"[{kind}]" for kind in KINDS}

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# 13 to 19 digits, in groups split by single spaces or hyphens, as cards are written and spoken.
CARD = re.compile(r"(?<![\w-])\d(?:[ -]?\d){12,18}(?![\w-])")
# Two letters, two check digits, then 11 to 30 letters or digits, in groups of any size.
IBAN = re.compile(r"(?<![\w])[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]){11,30}(?![\w])")
# Text without an @ or without enough digits cannot hold anything redacted: most text is skipped here.
DIGITS = re.compile(r"\d")
MIN_DIGITS = 7

# Keys of an event that name things rather than say them: never rewritten.
STRUCTURAL_KEYS = frozenset({"event_type", "event_id", "session_id", "source_event_id", "type", "stage"})


@dataclass(frozen=True)
class Policy:
    """What is redacted: on or off, which kinds, and the region phone numbers are read in."""

    enabled: bool
    kinds: frozenset[str]
    region: str

    @classmethod
    def from_settings(cls) -> Policy:
        return cls(
            enabled=settings.REDACTION_ENABLED,
            kinds=frozenset(settings.REDACTION_KINDS),
            region=settings.REDACTION_REGION,
        )


# What policy_for reads of a session's profile.
PROFILE_FIELDS = ("redaction_enabled", "redaction_kinds", "country")


def policy_for(session) -> Policy:
    """The policy of one session: its profile's settings where it has them, else the site's. (The
    profile is loaded with the session where this runs on the event loop: select_related.)"""
    site, profile = Policy.from_settings(), session.profile
    if profile is None:
        return site
    return Policy(
        enabled=site.enabled if profile.redaction_enabled is None else profile.redaction_enabled,
        kinds=frozenset(profile.redaction_kinds) or site.kinds,
        region=profile.country.upper() or site.region,
    )


def redact(text: str, policy: Policy) -> tuple[str, Counter]:
    """(text with each item found replaced by its placeholder, how many of each kind)."""
    counts: Counter = Counter()
    if not policy.enabled or not text:
        return text, counts
    has_at = "@" in text
    if not has_at and len(DIGITS.findall(text)) < MIN_DIGITS:
        return text, counts
    # Cards and IBANs first: a card number would otherwise also be read as a long phone number.
    if "card" in policy.kinds:
        text = _replace(CARD, text, _luhn_valid, "card", counts)
    if "iban" in policy.kinds:
        text = _replace(IBAN, text, _iban_valid, "iban", counts)
    if has_at and "email" in policy.kinds:
        text, found = EMAIL.subn(PLACEHOLDERS["email"], text)
        counts["email"] += found
    if "phone" in policy.kinds and len(DIGITS.findall(text)) >= MIN_DIGITS:
        text = _replace_phones(text, policy.region, counts)
    return text, +counts


def redact_event(event: dict, policy: Policy) -> Counter:
    """Redact every text of a forwarded event in place (nested objects and lists too); the counts."""
    counts: Counter = Counter()
    _walk(event, policy, counts)
    return counts


def redact_items(session, items: list[dict]) -> Counter:
    """Redact the events of forwarding items (`{"seq", "source", "event"}`) of one session, in place."""
    policy = policy_for(session)
    counts: Counter = Counter()
    if policy.enabled:
        for item in items:
            counts += redact_event(item["event"], policy)
    return counts


def redact_entry(session, entry: dict) -> dict:
    """A transcript entry (as a dict) with its text and intended text redacted: a number split over
    the chunks of one utterance is whole here."""
    policy = policy_for(session)
    if not policy.enabled:
        return entry
    return {
        **entry,
        "text": redact(entry["text"], policy)[0],
        "intended_text": redact(entry.get("intended_text") or "", policy)[0],
    }


def count_placeholders(texts) -> dict[str, int]:
    """How many of each placeholder the texts hold."""
    counts: Counter = Counter()
    for text in texts:
        for kind, placeholder in PLACEHOLDERS.items():
            counts[kind] += text.count(placeholder)
    return dict(+counts)


def _walk(value, policy: Policy, counts: Counter):
    if isinstance(value, dict):
        for key, item in value.items():
            if key in STRUCTURAL_KEYS:
                continue
            if isinstance(item, str):
                value[key], found = redact(item, policy)
                counts.update(found)
            else:
                _walk(item, policy, counts)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, str):
                value[index], found = redact(item, policy)
                counts.update(found)
            else:
                _walk(item, policy, counts)


def _replace(pattern: re.Pattern, text: str, valid, kind: str, counts: Counter) -> str:
    """Replace the longest valid run at each match: a match may run on into the words or numbers
    after it ("GB82 WEST 1234 5698 7654 32 thanks"), so shorter runs, ending between groups, count too."""
    parts, at = [], 0
    while match := pattern.search(text, at):
        found = _longest_valid(match.group(), valid)
        if found is None:
            parts.append(text[at : match.start() + 1])
            at = match.start() + 1
            continue
        parts += [text[at : match.start()], PLACEHOLDERS[kind]]
        counts[kind] += 1
        at = match.start() + found
    return "".join(parts) + text[at:]


def _longest_valid(candidate: str, valid) -> int | None:
    """Length of the longest prefix of `candidate` that is whole groups and valid, or None."""
    ends = [m.start() for m in re.finditer(r"[ -]", candidate)] + [len(candidate)]
    for end in reversed(ends):
        if valid(candidate[:end]):
            return end
    return None


def _replace_phones(text: str, region: str, counts: Counter) -> str:
    # Strict grouping: digits grouped as a phone number is written ("INV-2024-000123" is not one).
    matcher = phonenumbers.PhoneNumberMatcher(text, region or None, leniency=phonenumbers.Leniency.STRICT_GROUPING)
    spans = [(m.start, m.end) for m in matcher]
    for start, end in reversed(spans):
        text = text[:start] + PLACEHOLDERS["phone"] + text[end:]
    counts["phone"] += len(spans)
    return text


def _luhn_valid(candidate: str) -> bool:
    digits = [int(c) for c in candidate if c.isdigit()]
    if not 13 <= len(digits) <= 19 or len(set(digits)) == 1:  # 0000 0000 0000 0000 passes Luhn
        return False
    checksum = 0
    for index, digit in enumerate(reversed(digits)):
        if index % 2:
            digit *= 2
            if digit > 9:
                digit -= 9
        checksum += digit
    return checksum % 10 == 0


def _iban_valid(candidate: str) -> bool:
    iban = candidate.replace(" ", "").upper()
    if not 15 <= len(iban) <= 34 or not iban[:2].isalpha() or not iban[2:4].isdigit() or not iban.isalnum():
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1
