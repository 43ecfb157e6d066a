"""The credential a page (or API client) uses to forward events for exactly one session.

It is a signed, timestamped value holding the session id: nothing to store, it cannot be forged
without SECRET_KEY, it expires after INGEST_CREDENTIAL_MAX_AGE, and it never opens another session.
"""

from django.conf import settings
from django.core import signing

_SALT = "sessions_app.ingest"


def mint(session_id) -> str:
    return signing.TimestampSigner(salt=_SALT).sign(str(session_id))


def verify(credential: str, session_id) -> bool:
    """True when the credential was minted for this session and has not expired."""
    try:
        value = signing.TimestampSigner(salt=_SALT).unsign(credential, max_age=settings.INGEST_CREDENTIAL_MAX_AGE)
    except signing.BadSignature:  # also SignatureExpired
        return False
    return value == str(session_id)
