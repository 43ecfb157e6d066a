"""The baseline for the ingest figure: a bare Channels consumer that sends every message back.

bench/asgi.py serves it from the same Daphne process, behind the same origin validation and auth
middleware, as the real ingest consumer.
"""

from channels.generic.websocket import AsyncWebsocketConsumer


class EchoConsumer(AsyncWebsocketConsumer):
    async def receive(self, text_data=None, bytes_data=None):
        await self.send(text_data=text_data, bytes_data=bytes_data)
