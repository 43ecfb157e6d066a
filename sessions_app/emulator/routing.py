from django.urls import path

from .room import RoomConsumer

websocket_urlpatterns = [
    path("liveavatar-emulator/rtc", RoomConsumer.as_asgi()),
]
