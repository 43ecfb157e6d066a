from django.apps import AppConfig


class EmulatorConfig(AppConfig):
    name = "sessions_app.emulator"
    label = "liveavatar_emulator"
    verbose_name = "LiveAvatar emulator"
