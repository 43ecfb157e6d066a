import hmac

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpResponse, JsonResponse
from django.views.decorators.http import require_GET, require_safe
from prometheus_client import CONTENT_TYPE_LATEST

from . import account, health, scrape


@require_safe  # load balancers and orchestrators often probe with HEAD
async def live(request):
    """The process answers; nothing else is asked."""
    return JsonResponse({"status": "ok"})


@require_safe
async def healthz(request):
    """The short check (an uptime monitor's): the database and the channel layer, and which LiveAvatar
    this site talks to, without calling it."""
    database, _ = await sync_to_async(health.database)()
    layer, _ = await health.channel_layer()
    body = {
        "database": "ok" if database else "down",
        "channel_layer": "ok" if layer else "down",
        "liveavatar": "emulator" if settings.LIVEAVATAR_EMULATOR else "real",
    }
    return JsonResponse(body, status=200 if database and layer else 503)


@require_safe
async def ready(request):
    """Whether this process can serve: the database and the channel layer; LiveAvatar is reported
    but does not fail it, since every process shares that outage and the admin, the dashboard and
    the API still work (visitors are told the avatar is unavailable)."""
    needed = {"database": await sync_to_async(health.database)(), "channel_layer": await health.channel_layer()}
    parts = {**needed, "liveavatar": await health.liveavatar()}
    ok = all(up for up, _ in needed.values())
    status = "unavailable" if not ok else "ok" if parts["liveavatar"][0] else "degraded"
    body = {name: {"status": "ok" if up else "down", "detail": detail} for name, (up, detail) in parts.items()}
    return JsonResponse({"status": status, **body}, status=200 if ok else 503)


def _may_scrape(request) -> bool:
    token = settings.METRICS_TOKEN
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if token and scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
        return True
    return request.user.is_active and request.user.is_staff


@require_GET
async def metrics(request):
    """The Prometheus text format: every process's series (multiprocess mode) and the live sessions."""
    if not await sync_to_async(_may_scrape)(request):
        return HttpResponse("Metrics need the METRICS_TOKEN bearer token or a staff login.\n", status=403)
    await account.credits()  # refreshes the credits gauge when the reading is old
    return HttpResponse(await sync_to_async(scrape.exposition)(), content_type=CONTENT_TYPE_LATEST)


@staff_member_required
async def account_summary(request):
    """The LiveAvatar account box of the dashboard."""
    return JsonResponse(await account.summary())
