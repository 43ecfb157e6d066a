"""Webhook endpoints (where events go, with their signing secret) and deliveries (one event to one endpoint)."""

import base64
import secrets
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import F
from django.utils import timezone

from sessions_app.models import AvatarSession

EVENT_TYPES = ("session.started", "session.ended", "transcript.reconciled")
# After a rotation the old secret signs too, for this long: receivers can switch without losing any.
OLD_SECRET_GRACE = timedelta(hours=24)


def new_secret() -> str:
    """A Standard Webhooks secret: whsec_ and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


class EndpointQuerySet(models.QuerySet):
    def active(self):
        return self.filter(active=True)


class Endpoint(models.Model):
    """A receiver's URL, the events it wants and the secret its deliveries are signed with.

    The secret is shown once, when it is made (creation, rotation); it never appears in the admin,
    the API after that, or a log.
    """

    url = models.URLField(max_length=500)
    events = models.JSONField(default=list, help_text="Event types sent here, e.g. session.ended.")
    profile = models.CharField(
        max_length=64, blank=True, help_text="Only sessions of this profile (its slug); empty: every session."
    )
    active = models.BooleanField(default=True)
    secret = models.CharField(max_length=64, default=new_secret, editable=False)
    previous_secret = models.CharField(max_length=64, blank=True, editable=False)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    consecutive_failures = models.PositiveIntegerField(default=0, editable=False)
    disabled_at = models.DateTimeField(null=True, blank=True, editable=False)
    disabled_reason = models.CharField(max_length=200, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    created_by = models.CharField(max_length=64, blank=True, editable=False, help_text="API key or staff user.")

    objects = EndpointQuerySet.as_manager()

    class Meta:
        ordering = ["created_at"]

    def __str__(self):
        return self.url

    def wants(self, event_type: str, profile: str = "") -> bool:
        return self.active and event_type in self.events and (not self.profile or self.profile == profile)

    def rotate_secret(self) -> str:
        """A new secret, returned (to be shown once); the old one goes on signing for OLD_SECRET_GRACE."""
        self.previous_secret, self.secret = self.secret, new_secret()
        self.previous_secret_expires_at = timezone.now() + OLD_SECRET_GRACE
        self.save(update_fields=["secret", "previous_secret", "previous_secret_expires_at"])
        return self.secret

    def signing_secrets(self) -> list[str]:
        old = (
            self.previous_secret
            and self.previous_secret_expires_at
            and self.previous_secret_expires_at > timezone.now()
        )
        return [self.secret, self.previous_secret] if old else [self.secret]

    def enable(self) -> None:
        self.active, self.consecutive_failures, self.disabled_at, self.disabled_reason = True, 0, None, ""
        self.save(update_fields=["active", "consecutive_failures", "disabled_at", "disabled_reason"])

    def record_success(self) -> None:
        Endpoint.objects.filter(pk=self.pk).update(consecutive_failures=0)

    def record_failure(self) -> bool:
        """Count a failed attempt; after WEBHOOK_DISABLE_AFTER_FAILURES in a row, disable. True when disabled now."""
        Endpoint.objects.filter(pk=self.pk).update(consecutive_failures=F("consecutive_failures") + 1)
        self.refresh_from_db(fields=["consecutive_failures", "active"])
        limit = settings.WEBHOOK_DISABLE_AFTER_FAILURES
        if not self.active or self.consecutive_failures < limit:
            return False
        disabled = Endpoint.objects.filter(pk=self.pk, active=True).update(
            active=False,
            disabled_at=timezone.now(),
            disabled_reason=f"Disabled after {self.consecutive_failures} failed deliveries in a row.",
        )
        return bool(disabled)


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"  # waiting for its first or next attempt
    DELIVERED = "delivered", "Delivered"  # a 2xx answer
    FAILED = "failed", "Failed"  # every attempt failed, or the endpoint was disabled


class Delivery(models.Model):
    """One event for one endpoint, tried until a 2xx answer; every attempt has the same webhook-id.

    The payload is built at the first attempt (when the session's transcript has settled) and sent
    unchanged by every attempt after it.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="deliveries")
    session = models.ForeignKey(AvatarSession, on_delete=models.CASCADE, related_name="webhook_deliveries")
    event_type = models.CharField(max_length=32)
    occurred_at = models.DateTimeField(default=timezone.now, help_text="When the event happened (server clock).")
    payload = models.JSONField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-occurred_at"]
        verbose_name_plural = "deliveries"
        indexes = [models.Index(fields=["endpoint", "status"])]

    def __str__(self):
        return f"{self.event_type} → {self.endpoint} ({self.status})"

    @property
    def webhook_id(self) -> str:
        return f"msg_{self.id.hex}"
