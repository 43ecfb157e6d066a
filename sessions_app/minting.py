"""Mint a LiveAvatar session token and record the AvatarSession (for the page and the REST API)."""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from urllib.parse import quote

from asgiref.sync import sync_to_async
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from operations import metrics

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
    behind the same address, nor the reverse). Each count reads a short range of its own index
    (session_visitor_recent, session_address_recent).
    """
    recent = AvatarSession.objects.filter(created_at__gte=timezone.now() - timedelta(minutes=1))
    if recent.filter(visitor_key=visitor_key).count() >= settings.MINT_RATE_PER_MINUTE:
        return True
    if not client_address:  # then only the visitor counts: an empty address must not pool everyone
        return False
    by_address = recent.filter(client_address=client_address, created_via=created_via)
    return by_address.count() >= settings.MINT_RATE_PER_ADDRESS_PER_MINUTE


async def mint_session(
    *,
    visitor_key: str,
    client_address: str = "",
    created_via: str = "page",
    overrides: dict | None = None,
) -> tuple[AvatarSession, str]:
    """Mint a token and store the AvatarSession; returns (session, session_token).

    Raises MintRateLimited before calling LiveAvatar when the visitor (or its address) minted too
    often, and MintError (with the stored failed row) when LiveAvatar fails.
    """
    client_address = (client_address or "")[:64]
    config = token_config(overrides)  # an invalid override fails before any query
    if await sync_to_async(_over_rate_limit)(visitor_key, client_address, created_via):
        metrics.MINT_FAILURES.labels("visitor_rate_limit").inc()
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
    started = time.perf_counter()
    try:
        token = await liveavatar.get_client().create_token(config)
    except liveavatar.LiveAvatarError as error:
        metrics.MINT_FAILURES.labels(error.kind).inc()
        logger.warning("Minting a LiveAvatar token failed: %s", error)
        session.status, session.error, session.ended_at = SessionStatus.FAILED, error.visitor_message, timezone.now()
        await session.asave()
        raise MintError(session, error) from error
    metrics.MINT_SECONDS.observe(time.perf_counter() - started)
    session.liveavatar_session_id = token["session_id"]
    if server_starts(created_via):
        session.start_token = token["session_token"]
    await session.asave()
    return session, token["session_token"]


def server_starts(created_via: str = "page") -> bool:
    """Whether the server, not the visitor's page, starts this channel's sessions (API clients
    always get the token and start their sessions themselves)."""
    return settings.LIVEAVATAR_SESSION_START == "server" and created_via == "page"


def page_config(request, session: AvatarSession, session_token: str, *, auto_start: bool = False) -> dict:
    """What the visitor page needs to run this session (docs/ARCHITECTURE.md "Page context"). Never the API key."""
    credential = quote(credentials.mint(session.id), safe="")
    if settings.LIVEAVATAR_EMULATOR:
        api_url = request.build_absolute_uri("/liveavatar-emulator")
    else:
        api_url = settings.LIVEAVATAR_API_URL
    if server_starts(session.created_via):
        # The page asks this site to start, keep alive and stop; the session token stays here.
        start = {
            "session_start": "server",
            "start_url": f"/sessions/{session.id}/start?credential={credential}",
            "keep_alive_url": f"/sessions/{session.id}/keep-alive?credential={credential}",
            "stop_url": f"/sessions/{session.id}/stop?credential={credential}",
        }
    else:
        start = {"session_start": "browser", "session_token": session_token, "liveavatar_api_url": api_url}
    return {
        "session_id": str(session.id),
        "liveavatar_session_id": session.liveavatar_session_id,
        **start,
        "events_ws_url": f"/ws/sessions/{session.id}/events/?credential={credential}",
        "events_http_url": f"/sessions/{session.id}/events?credential={credential}",
        "new_session_url": reverse("sessions_app:new_session"),
        "interactivity": session.interactivity,
        "max_session_duration": session.max_session_duration,
        "emulator": settings.LIVEAVATAR_EMULATOR,
        "auto_start": auto_start,
        "mark_operator_lines": settings.CONTROL_MARK_OPERATOR_LINES,
    }


def error_config(message: str) -> dict:
    """The page context when no session could be minted: the words to show, and how to try again."""
    return {"error": message, "new_session_url": reverse("sessions_app:new_session")}
