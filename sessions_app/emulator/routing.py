from django.urls import path

from .signaling import SignalConsumer

# livekit-client appends /rtc/v1 to the livekit_url that the emulator's start returns.
websocket_urlpatterns = [
    path("liveavatar-emulator/rtc/v1", SignalConsumer.as_asgi()),
]
