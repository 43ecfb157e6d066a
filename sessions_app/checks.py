"""System checks for settings combinations that cannot work."""

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register


@register(Tags.security)
def check_secret_key(app_configs, **kwargs):
    if settings.PRODUCTION and settings.SECRET_KEY == settings.DEV_SECRET_KEY:
        return [
            Error(
                "DJANGO_SECRET_KEY is not set.",
                hint="Set DJANGO_SECRET_KEY to a long random string in production.",
                id="sessions_app.E001",
            )
        ]
    return []


@register()
def check_liveavatar(app_configs, **kwargs):
    problems = []
    if settings.LIVEAVATAR_INTERACTIVITY not in ("CONVERSATIONAL", "PUSH_TO_TALK"):
        problems.append(
            Error(
                f"LIVEAVATAR_INTERACTIVITY is {settings.LIVEAVATAR_INTERACTIVITY!r}.",
                hint="Use CONVERSATIONAL or PUSH_TO_TALK.",
                id="sessions_app.E002",
            )
        )
    if settings.LIVEAVATAR_VIDEO_QUALITY not in ("very_high", "high", "medium", "low"):
        problems.append(
            Error(
                f"LIVEAVATAR_VIDEO_QUALITY is {settings.LIVEAVATAR_VIDEO_QUALITY!r}.",
                hint="Use very_high, high, medium or low.",
                id="sessions_app.E003",
            )
        )
    if settings.LIVEAVATAR_SESSION_START not in ("browser", "server"):
        problems.append(
            Error(
                f"LIVEAVATAR_SESSION_START is {settings.LIVEAVATAR_SESSION_START!r}.",
                hint="Use browser (the page starts the session) or server (this site starts it).",
                id="sessions_app.E004",
            )
        )
    if settings.PRODUCTION and settings.LIVEAVATAR_EMULATOR:
        problems.append(
            Warning(
                "LIVEAVATAR_API_KEY is not set: production is running the built-in emulator.",
                hint="Set LIVEAVATAR_API_KEY to talk to the real LiveAvatar.",
                id="sessions_app.W001",
            )
        )
    if settings.PRODUCTION and "InMemoryChannelLayer" in settings.CHANNEL_LAYERS["default"]["BACKEND"]:
        problems.append(
            Warning(
                "The in-memory channel layer serves one process only.",
                hint="Set REDIS_URL when running several Daphne processes.",
                id="sessions_app.W002",
            )
        )
    return problems
