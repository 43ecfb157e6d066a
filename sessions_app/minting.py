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
from profiles import budgets
from profiles.models import AvatarProfile

from . import credentials, liveavatar
from .models import AvatarSession, CreatedVia, SessionStatus

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
    """Nothing was minted: this visitor minted MINT_RATE_PER_MINUTE tokens in the last minute, or its
    address MINT_RATE_PER_ADDRESS_PER_MINUTE, or a budget is spent (`message` says which and when it
    resets; `retry_after` is in seconds)."""

    def __init__(self, message: str = RATE_LIMITED_MESSAGE, retry_after: int = 60):
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


def token_config(profile: AvatarProfile, overrides: dict | None = None) -> dict:
    """The profile's FULL-mode token configuration, with the allowed overrides applied."""
    overrides = overrides or {}
    config = profile.token_config(overrides.get("max_session_duration"))
    if "language" in overrides:
        (config.get("avatar_persona") or config["voice_agent"])["language"] = overrides["language"]
    if overrides.get("is_sandbox"):
        # Sandbox sessions may only use the sandbox avatar.
        config["is_sandbox"], config["avatar_id"] = True, settings.SANDBOX_AVATAR_ID
    elif "is_sandbox" in overrides:
        config["is_sandbox"], config["avatar_id"] = False, profile.avatar_id
    if "interactivity_type" in overrides:
        config["interactivity_type"] = overrides["interactivity_type"]
    return config


def _over_rate_limit(visitor_key: str, client_address: str, created_via: str) -> bool:
    """Whether this visitor, or this client address, minted its allowance in the last minute.

    Counting rows keeps the limit right across several Daphne processes. The address counts mints
    of the same channel only (a partner's API calls do not use up the allowance of page visitors
    behind the same address, nor the reverse). Each count reads a short range of its own index
    (session_visitor_recent, session_address_recent); two plain counts cost the ORM less than one
    aggregate with two filtered counts.
    """
    recent = AvatarSession.objects.filter(created_at__gte=timezone.now() - timedelta(minutes=1))
    if recent.filter(visitor_key=visitor_key).count() >= settings.MINT_RATE_PER_MINUTE:
        return True
    if not client_address:  # then only the visitor counts: an empty address must not pool everyone
        return False
    by_address = recent.filter(client_address=client_address, created_via=created_via)
    return by_address.count() >= settings.MINT_RATE_PER_ADDRESS_PER_MINUTE


def _admit(session: AvatarSession) -> list[AvatarSession]:
    """Store the new session if its visitor, its address and the budgets allow it (one trip to the
    database thread); returns the unstarted sessions voided to make room (budgets.reserve)."""
    if _over_rate_limit(session.visitor_key, session.client_address, session.created_via):
        metrics.MINT_FAILURES.labels("visitor_rate_limit").inc()
        raise MintRateLimited()
    try:
        return budgets.reserve(session)
    except budgets.BudgetExceeded as exc:
        raise MintRateLimited(exc.message, exc.retry_after) from None


async def mint_session(
    *,
    visitor_key: str,
    client_address: str = "",
    created_via: str = CreatedVia.PAGE,
    overrides: dict | None = None,
    profile: AvatarProfile | None = None,
) -> tuple[AvatarSession, str]:
    """Mint a token for the profile (the default one when None) and store the AvatarSession;
    returns (session, session_token).

    Raises MintRateLimited before calling LiveAvatar when the visitor (or its address) minted too
    often or a budget is spent, and MintError (with the stored failed row) when LiveAvatar fails.
    The row is stored before LiveAvatar is called: from then on it holds its place under the
    profile's budgets (profiles.budgets.reserve).
    """
    client_address = (client_address or "")[:64]
    unknown = set(overrides or {}) - ALLOWED_OVERRIDES
    if unknown:  # fails before any query
        raise ValueError(f"cannot override {', '.join(sorted(unknown))}")
    if profile is None:
        profile = await sync_to_async(AvatarProfile.objects.default)()
    config = token_config(profile, overrides)
    session = AvatarSession(
        profile=profile,
        config=config,
        avatar_id=config["avatar_id"],
        is_sandbox=config["is_sandbox"],
        interactivity=config["interactivity_type"],
        max_session_duration=config.get("max_session_duration"),
        visitor_key=visitor_key,
        client_address=client_address,
        created_via=created_via,
    )
    voided = await sync_to_async(_admit)(session)
    client = liveavatar.get_client()
    for stale in voided:
        await _void(client, stale)
    started = time.perf_counter()
    try:
        token = await client.create_token(session.config)
    except liveavatar.LiveAvatarError as error:
        metrics.MINT_FAILURES.labels(error.kind).inc()
        logger.warning("Minting a LiveAvatar token failed: %s", error)
        session.status, session.error, session.ended_at = SessionStatus.FAILED, error.visitor_message, timezone.now()
        await session.asave(update_fields=["status", "error", "ended_at"])
        raise MintError(session, error) from error
    metrics.MINT_SECONDS.observe(time.perf_counter() - started)
    session.liveavatar_session_id = token["session_id"]
    if server_starts(session):
        session.start_token = token["session_token"]
    await AvatarSession.objects.filter(pk=session.pk).aupdate(
        liveavatar_session_id=session.liveavatar_session_id, start_token=session.start_token
    )
    return session, token["session_token"]


def server_starts(session: AvatarSession) -> bool:
    """Whether the server, not the visitor's page, starts this session: its profile says so (API
    clients always get the token and start their sessions themselves)."""
    if session.created_via != CreatedVia.PAGE:
        return False
    return session.profile.starts_on_server if session.profile else settings.LIVEAVATAR_SESSION_START == "server"


async def _void(client: liveavatar.LiveAvatarClient, session: AvatarSession) -> None:
    """Stop an unstarted token at LiveAvatar so that it can no longer start (its place went to another)."""
    if not session.liveavatar_session_id:
        return
    try:
        await client.stop(session_id=session.liveavatar_session_id, reason="USER_CLOSED")
    except liveavatar.LiveAvatarError as exc:
        if exc.status != 404:
            logger.warning("Could not void unstarted session %s: %s", session.id, exc)


async def visitor_config(request, visitor_key: str, *, profile=None, auto_start: bool = False) -> tuple[dict, int]:
    """A new session for a visitor's page: (its page config, 200), or (the words saying why there
    is none, 429 or 503)."""
    try:
        session, token = await mint_session(
            visitor_key=visitor_key, client_address=request.META.get("REMOTE_ADDR", ""), profile=profile
        )
    except MintRateLimited as exc:
        return error_config(exc.message), 429
    except MintError as exc:
        return error_config(exc.error.visitor_message), 503
    return page_config(request, session, token, auto_start=auto_start), 200


def page_config(request, session: AvatarSession, session_token: str, *, auto_start: bool = False) -> dict:
    """What the visitor page needs to run this session (docs/ARCHITECTURE.md "Page context"). Never the API key."""
    credential = quote(credentials.mint(session.id), safe="")
    if settings.LIVEAVATAR_EMULATOR:
        api_url = request.build_absolute_uri("/liveavatar-emulator")
    else:
        api_url = settings.LIVEAVATAR_API_URL
    if server_starts(session):
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
        "mark_operator_lines": session.profile.marks_operator_lines
        if session.profile
        else settings.CONTROL_MARK_OPERATOR_LINES,
    }


def error_config(message: str) -> dict:
    """The page context when no session could be minted: the words to show, and how to try again."""
    return {"error": message, "new_session_url": reverse("sessions_app:new_session")}
