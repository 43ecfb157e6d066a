"""A profile's page inside other sites: who may frame it, and how a framed page gets its token.

Only the profile's allowed origins may frame its page (CSP frame-ancestors; every other page keeps
'none'). A framed page is fetched before the browser applies that policy, so it mints nothing when
served: once shown, which the policy allows only inside an allowed origin, it asks for its token
with a signed ticket from the page itself. The ticket, not a cookie, carries the visitor: a page
framed by another site gets no SameSite=Lax cookies.
"""

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core import signing
from django.http import Http404
from django.urls import reverse
from django.utils.csp import build_policy

from .models import AvatarProfile

TICKET_SALT = "profiles.mint-ticket"


async def page_profile(slug: str | None) -> AvatarProfile:
    """The profile of /p/<slug>/ (the default one for `/`); 404 when unknown or inactive."""
    if slug is None:
        profile = await sync_to_async(AvatarProfile.objects.default)()
    else:
        profile = await AvatarProfile.objects.filter(slug=slug).afirst()
    if profile is None or not profile.active:
        raise Http404("No such avatar.")
    return profile


def mint_ticket(profile: AvatarProfile, visitor_key: str) -> str:
    return signing.dumps({"profile": profile.slug, "visitor": visitor_key}, salt=TICKET_SALT, compress=True)


def read_ticket(ticket: str, profile: AvatarProfile) -> str | None:
    """The visitor key a ticket of this profile's page carries, or None for a bad, old or foreign one."""
    try:
        data = signing.loads(ticket, salt=TICKET_SALT, max_age=settings.INGEST_CREDENTIAL_MAX_AGE)
    except signing.BadSignature:
        return None
    return data.get("visitor") if data.get("profile") == profile.slug else None


def is_same_origin(request) -> bool:
    """The request came from one of this site's own pages (browsers send Origin on every POST)."""
    return request.headers.get("Origin") == f"{request.scheme}://{request.get_host()}"


def page_fields(profile: AvatarProfile, visitor_key: str) -> dict:
    """What every page of the profile needs besides its session: where and how to mint the next one,
    and the origins it may tell about the conversation (postMessage)."""
    return {
        "profile": profile.slug,
        "new_session_url": reverse("profiles:session", args=[profile.slug]),
        "mint_ticket": mint_ticket(profile, visitor_key),
        "allowed_origins": list(profile.allowed_origins),
    }


def deferred_config(profile: AvatarProfile, visitor_key: str, *, auto_start: bool) -> dict:
    """The page context of a framed page: no token yet, it mints when the visitor starts."""
    return {"mint_later": True, "auto_start": auto_start, **page_fields(profile, visitor_key)}


def allow_framing(response, profile: AvatarProfile) -> None:
    """The profile's frame-ancestors instead of the site's 'none' (the middleware keeps a header set here)."""
    if not profile.allowed_origins:
        return
    response.headers["Content-Security-Policy"] = build_policy(
        {**settings.SECURE_CSP, "frame-ancestors": profile.allowed_origins}
    )
    # X-Frame-Options cannot list origins; the CSP above says who may frame the page.
    response.xframe_options_exempt = True


def embed_info(request, profile: AvatarProfile) -> dict:
    """What /embed.js needs to open the profile's conversation."""
    return {
        "name": profile.name,
        "url": request.build_absolute_uri(reverse("profiles:page", args=[profile.slug])),
    }


def snippet(request, profile: AvatarProfile) -> str:
    """The snippet a site owner pastes into their pages."""
    return f'<script src="{request.build_absolute_uri("/embed.js")}" data-profile="{profile.slug}" async></script>'
