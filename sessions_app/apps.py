from django.apps import AppConfig


class SessionsAppConfig(AppConfig):
    name = "sessions_app"
    verbose_name = "Avatar sessions"

    def ready(self):
        from . import checks  # noqa: F401  (registers the system checks)
