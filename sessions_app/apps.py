from django.apps import AppConfig
from django.core.signals import request_started


class SessionsAppConfig(AppConfig):
    name = "sessions_app"
    verbose_name = "Avatar sessions"

    def ready(self):
        from . import checks  # noqa: F401  (registers the system checks)
        from .lifecycle import start_reaper

        request_started.connect(start_reaper, dispatch_uid="sessions_app.reaper")
