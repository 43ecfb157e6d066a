import phonenumbers
from django.conf import settings
from django.core.checks import Error, register

from .redaction import KINDS


@register()
def check_redaction_settings(app_configs, **kwargs):
    errors = []
    unknown = sorted(set(settings.REDACTION_KINDS) - set(KINDS))
    if unknown:
        errors.append(
            Error(
                f"REDACTION_KINDS has unknown kinds: {', '.join(unknown)}.",
                hint=f"Choose from {', '.join(KINDS)}.",
                id="privacy.E001",
            )
        )
    if settings.REDACTION_REGION not in phonenumbers.SUPPORTED_REGIONS:
        errors.append(
            Error(
                f"REDACTION_REGION {settings.REDACTION_REGION!r} is not a country code phonenumbers knows.",
                hint="Use a two-letter ISO country code, e.g. US, GB, DE, FR.",
                id="privacy.E002",
            )
        )
    return errors
