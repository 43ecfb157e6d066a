"""The site's ASGI application plus the baseline of the ingest figure, the echo websocket at
/ws/bench/echo/, routed behind the same origin validation and auth middleware as the real consumers."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

from channels.routing import ProtocolTypeRouter  # noqa: E402
from django.urls import path  # noqa: E402

from avatar_site.asgi import django_asgi_app, websocket_app  # noqa: E402
from bench.echo import EchoConsumer  # noqa: E402
from sessions_app.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": websocket_app([path("ws/bench/echo/", EchoConsumer.as_asgi()), *websocket_urlpatterns]),
    }
)
