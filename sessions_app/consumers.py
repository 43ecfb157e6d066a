"""Websocket consumers: event ingest from pages, live feed for staff. (Filled by issue 4.)"""

from channels.generic.websocket import AsyncJsonWebsocketConsumer


class IngestConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        await self.close(code=4404)


class DashboardConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        await self.close(code=4403)
