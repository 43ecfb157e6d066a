"""ASGI entry point: HTTP through Django, websockets through Channels behind origin validation."""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "avatar_site.settings")
# Set Django up first: the handler and the routing imports need the app registry.
django.setup(set_prefix=False)

from avatar_site.handlers import ReusedThreadASGIHandler  # noqa: E402

django_asgi_app = ReusedThreadASGIHandler()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from sessions_app.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
