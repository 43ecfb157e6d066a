"""Mint a LiveAvatar session token and record the AvatarSession (for the page and the REST API)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import timedelta
from urllib.parse import quote

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from . import credentials, liveavatar
from .models import AvatarSession, SessionStatus

logger = logging.getLogger(__name__)

ALLOWED_OVERRIDES = {"language", "is_sandbox", "interactivity_type", "max_session_duration"}
RATE_LIMITED_MESSAGE = "You have started many conversations in the last minute. Please wait a minute and try again."


class MintError(Exception):
    """LiveAvatar refused or failed; the failed AvatarSession row is stored."""

    def __init__(self, session: AvatarSession, error: liveavatar.LiveAvatarError):
        super().__init__(str(error))
        self.session = session
        self.error = error


class MintRateLimited(Exception):
    """This visitor minted MINT_RATE_PER_MINUTE tokens in the last minute, or its address
    MINT_RATE_PER_ADDRESS_PER_MINUTE."""

    message = RATE_LIMITED_MESSAGE


def token_config(overrides: dict | None = None) -> dict:
    """The FULL-mode token configuration from settings, with the allowed overrides applied."""
    overrides = overrides or {}
    unknown = set(overrides) - ALLOWED_OVERRIDES
    if unknown:
        raise ValueError(f"cannot override {', '.join(sorted(unknown))}")
    is_sandbox = overrides.get("is_sandbox", settings.LIVEAVATAR_SANDBOX)
    persona = {"language": overrides.get("language", settings.LIVEAVATAR_LANGUAGE)}
    if settings.LIVEAVATAR_VOICE_ID:
        persona["voice_id"] = settings.LIVEAVATAR_VOICE_ID
    if settings.LIVEAVATAR_CONTEXT_ID:
        persona["context_id"] = settings.LIVEAVATAR_CONTEXT_ID
    config = {
        "mode": "FULL",
        # Sandbox sessions may only use the sandbox avatar.
        "avatar_id": settings.SANDBOX_AVATAR_ID if is_sandbox else settings.LIVEAVATAR_AVATAR_ID,
        "is_sandbox": is_sandbox,
        "avatar_persona": persona,
        "interactivity_type": overrides.get("interactivity_type", settings.LIVEAVATAR_INTERACTIVITY),
        "video_settings": {"quality": settings.LIVEAVATAR_VIDEO_QUALITY, "encoding": "H264"},
    }
    max_duration = overrides.get("max_session_duration", settings.LIVEAVATAR_MAX_SESSION_SECONDS)
    if max_duration:
        config["max_session_duration"] = max_duration
    return config


def _over_rate_limit(visitor_key: str, client_address: str, created_via: str) -> bool:
    """Whether this visitor, or this client address, minted its allowance in the last minute.

    Counting rows keeps the limit right across several Daphne processes. The address counts mints
    of the same channel only (a partner's API calls do not use up the allowance of page visitors
    behind the same address, nor the reverse). One statement, two counts that each read a short
    range of their own index (session_visitor_recent, session_address_recent) and no row.
    """
    table = connection.ops.quote_name(AvatarSession._meta.db_table)
    since = connection.ops.adapt_datetimefield_value(timezone.now() - timedelta(minutes=1))
    # Without an address only the visitor counts (an empty address must not pool everyone).
    address = client_address or None
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT (SELECT COUNT(*) FROM {table} WHERE visitor_key = %s AND created_at >= %s),"
            f" (SELECT COUNT(*) FROM {table} WHERE client_address = %s AND created_via = %s AND created_at >= %s)",
            [visitor_key, since, address, created_via, since],
        )
        by_visitor, by_address = cursor.fetchone()
    return by_visitor >= settings.MINT_RATE_PER_MINUTE or by_address >= settings.MINT_RATE_PER_ADDRESS_PER_MINUTE


def _insert(session: AvatarSession) -> None:
    """INSERT the new row in one plain statement: save() spent twice as long as this, in Python."""
    meta, ops = AvatarSession._meta, connection.ops
    fields = meta.local_concrete_fields
    sql = "INSERT INTO {} ({}) VALUES ({})".format(
        ops.quote_name(meta.db_table),
        ", ".join(ops.quote_name(f.column) for f in fields),
        ", ".join(["%s"] * len(fields)),
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [f.get_db_prep_save(getattr(session, f.attname), connection) for f in fields])
    session._state.adding, session._state.db = False, connection.alias


async def _save_outcome(
    session: AvatarSession, inserting: asyncio.Future | None, changes: dict, save: bool = True
) -> None:
    """Apply LiveAvatar's outcome (`changes`) to the session and store it: by an UPDATE once the
    INSERT started in the wait has run (it stored the session as it was before), or with the INSERT
    when there was no wait. `save=False` leaves that UPDATE to the caller."""
    if inserting:
        await inserting
    for name, value in changes.items():
        setattr(session, name, value)
    if inserting is None:
        await sync_to_async(_insert)(session)
    elif save:
        await sync_to_async(session.save)(update_fields=list(changes))


async def mint_session(
    *,
    visitor_key: str,
    client_address: str = "",
    created_via: str = "page",
    overrides: dict | None = None,
    while_waiting: Callable[[AvatarSession], None] | None = None,
    defer_liveavatar_id: bool = False,
) -> tuple[AvatarSession, str]:
    """Mint a token and store the AvatarSession; returns (session, session_token).

    Raises MintRateLimited before calling LiveAvatar when the visitor (or its address) minted too
    often, and MintError (with the stored failed row) when LiveAvatar fails.

    The wait for LiveAvatar is idle time and what runs after its answer is on the caller's path, so
    the row is written in the wait, once the request has gone out; `while_waiting` gets the session
    then too. (The in-process emulator answers at once: there the row is written after it.) With
    `defer_liveavatar_id` the caller saves LiveAvatar's id of the session when it suits it (the page
    does once it has been sent): `session.save(update_fields=["liveavatar_session_id"])`.
    """
    client_address = (client_address or "")[:64]
    config = token_config(overrides)  # an invalid override fails before any query
    if await sync_to_async(_over_rate_limit)(visitor_key, client_address, created_via):
        raise MintRateLimited()
    session = AvatarSession(
        config=config,
        avatar_id=config["avatar_id"],
        is_sandbox=config["is_sandbox"],
        interactivity=config["interactivity_type"],
        max_session_duration=config.get("max_session_duration"),
        visitor_key=visitor_key,
        client_address=client_address,
        created_via=created_via,
    )
    inserting: asyncio.Future | None = None

    def sent():  # on the loop, while LiveAvatar mints
        nonlocal inserting
        inserting = asyncio.ensure_future(sync_to_async(_insert)(session))
        if while_waiting:
            while_waiting(session)

    try:
        token = await liveavatar.get_client().create_token(config, on_sent=sent)
    except liveavatar.LiveAvatarError as error:
        logger.warning("Minting a LiveAvatar token failed: %s", error)
        await _save_outcome(
            session,
            inserting,
            {"status": SessionStatus.FAILED, "error": error.visitor_message, "ended_at": timezone.now()},
        )
        raise MintError(session, error) from error
    await _save_outcome(
        session, inserting, {"liveavatar_session_id": token["session_id"]}, save=not defer_liveavatar_id
    )
    return session, token["session_token"]


def page_config(request, session: AvatarSession, session_token: str, *, auto_start: bool = False) -> dict:
    """What the visitor page needs to run this session (docs/ARCHITECTURE.md "Page context"). Never the API key."""
    credential = quote(credentials.mint(session.id), safe="")
    if settings.LIVEAVATAR_EMULATOR:
        api_url = request.build_absolute_uri("/liveavatar-emulator")
    else:
        api_url = settings.LIVEAVATAR_API_URL
    return {
        "session_id": str(session.id),
        "liveavatar_session_id": session.liveavatar_session_id,
        "session_token": session_token,
        "liveavatar_api_url": api_url,
        "events_ws_url": f"/ws/sessions/{session.id}/events/?credential={credential}",
        "events_http_url": f"/sessions/{session.id}/events?credential={credential}",
        "new_session_url": reverse("sessions_app:new_session"),
        "interactivity": session.interactivity,
        "max_session_duration": session.max_session_duration,
        "emulator": settings.LIVEAVATAR_EMULATOR,
        "auto_start": auto_start,
    }


def error_config(message: str) -> dict:
    """The page context when no session could be minted: the words to show, and how to try again."""
    return {"error": message, "new_session_url": reverse("sessions_app:new_session")}
