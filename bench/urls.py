"""The site's URLs plus the baseline of the mint figure: a trivial view behind the same middleware."""

from django.http import HttpResponse
from django.urls import include, path


async def trivial(request):
    # Async like the visitor page, so Django runs both through its middleware the same way.
    return HttpResponse(b"ok", content_type="text/plain")


urlpatterns = [
    path("bench/trivial", trivial),
    path("", include("avatar_site.urls")),
]
