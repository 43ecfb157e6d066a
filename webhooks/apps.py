from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"

    def ready(self):
        from sessions_app.api.api import api

        from . import signals  # noqa: F401  (session events → deliveries)
        from .api import router

        api.add_router("/webhooks", router)
