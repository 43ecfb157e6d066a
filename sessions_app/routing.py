from django.conf import settings
from django.urls import path

from . import consumers

websocket_urlpatterns = [
    path("ws/sessions/<uuid:session_id>/events/", consumers.IngestConsumer.as_asgi()),
    path("ws/dashboard/", consumers.DashboardConsumer.as_asgi()),
]

if settings.LIVEAVATAR_EMULATOR:
    from .emulator.routing import websocket_urlpatterns as emulator_patterns

    websocket_urlpatterns += emulator_patterns
