"""The embed: /embed.js, what it asks about a profile (CORS, allowed origins only), and a framed page's mint."""

from django.http import JsonResponse
from django.shortcuts import render
from django.utils.cache import patch_cache_control, patch_vary_headers
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST, require_safe

from sessions_app.minting import error_config, visitor_config

from . import embedding


@require_safe
def embed_js(request):
    response = render(request, "profiles/embed.js", content_type="text/javascript; charset=utf-8")
    patch_cache_control(response, public=True, max_age=300)
    return response


@require_GET
async def embed(request, slug):
    """The launcher's details, readable only by the profile's allowed origins: on any other site the
    browser keeps the answer from embed.js (no Access-Control-Allow-Origin), which then shows nothing."""
    profile = await embedding.page_profile(slug)
    origin = request.headers.get("Origin", "")
    if not profile.allows_origin(origin):
        response = JsonResponse({"error": "forbidden", "message": "This site may not embed this avatar."}, status=403)
    else:
        response = JsonResponse(embedding.embed_info(request, profile))
        response["Access-Control-Allow-Origin"] = origin
    patch_vary_headers(response, ["Origin"])
    return response


@csrf_exempt  # the page's signed ticket and its Origin are the checks: a framed page has no CSRF cookie
@require_POST
async def new_session(request, slug):
    """A token for a page of this profile that is being shown ("Start", "Start a new conversation")."""
    profile = await embedding.page_profile(slug)
    visitor_key = embedding.read_ticket(request.headers.get("X-Mint-Ticket", ""), profile)
    if visitor_key is None or not embedding.is_same_origin(request):
        return JsonResponse(error_config("This page is too old to start a conversation. Please reload it."), status=403)
    config, status = await visitor_config(request, visitor_key, profile=profile, auto_start=True)
    return JsonResponse(config | embedding.page_fields(profile, visitor_key), status=status)
