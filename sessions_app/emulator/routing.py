from django.urls import path

from .signaling import SignalConsumer

# livekit-client appends /rtc/v1 (or, before 2.16, /rtc) to the livekit_url that the emulator's start returns.
websocket_urlpatterns = [
    path("liveavatar-emulator/rtc/v1", SignalConsumer.as_asgi()),
    path("liveavatar-emulator/rtc", SignalConsumer.as_asgi(), {"legacy": True}),
]
