from django.apps import AppConfig


class PrivacyConfig(AppConfig):
    name = "privacy"
    verbose_name = "Privacy: redaction and retention"

    def ready(self):
        from . import checks, signals  # noqa: F401  (system checks, session end → redaction counts)
