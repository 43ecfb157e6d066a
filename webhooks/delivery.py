"""Sending deliveries: Standard Webhooks signatures, one attempt at a time, back-off, disabling.

Each attempt first queues the next one (the back-off delay after this attempt's timeout) in the
same transaction that counts it, so a worker killed in the middle of an attempt leaves its retry
behind: delivery is at least once, and every attempt carries the delivery's one webhook-id. A
queued attempt whose number is not the next one (another got there first) does nothing.
"""

import json
import logging
from dataclasses import dataclass
from datetime import timedelta

import httpx
from django.conf import settings
from django.db import transaction
from django.tasks import task
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from . import payloads
from .models import Delivery, DeliveryStatus, Endpoint

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    ok: bool
    status_code: int | None = None
    error: str = ""


def max_attempts() -> int:
    return len(settings.WEBHOOK_RETRY_DELAYS) + 1


def queue_attempt(delivery: Delivery, attempt: int, at) -> None:
    """Queue attempt number `attempt` of the delivery to run at `at` (inside the caller's transaction)."""
    deliver.using(run_after=at).enqueue(str(delivery.pk), attempt)


def record_event(session, event_type: str, delay: float = 0) -> list[Delivery]:
    """One delivery per active endpoint that wants the event, each queued to run after `delay` seconds."""
    profile = session.profile.slug if session.profile_id else ""
    at = timezone.now()
    run_at = at + timedelta(seconds=delay)
    deliveries = []
    for endpoint in Endpoint.objects.active():
        if endpoint.wants(event_type, profile):
            delivery = Delivery.objects.create(
                endpoint=endpoint, session_id=session.pk, event_type=event_type, occurred_at=at, next_attempt_at=run_at
            )
            queue_attempt(delivery, 1, run_at)
            deliveries.append(delivery)
    return deliveries


def send_again(delivery: Delivery) -> None:
    """Staff's "send again": pending once more with a fresh run of attempts, the same payload and
    webhook-id, the first attempt now. (Attempts still queued from before find their turn gone.)"""
    with transaction.atomic():
        delivery = Delivery.objects.select_for_update().get(pk=delivery.pk)
        delivery.status, delivery.attempts, delivery.next_attempt_at = DeliveryStatus.PENDING, 0, timezone.now()
        delivery.save(update_fields=["status", "attempts", "next_attempt_at"])
        queue_attempt(delivery, 1, delivery.next_attempt_at)


@task
def deliver(delivery_id: str, number: int) -> str:
    """The queued task: one attempt of a delivery."""
    return attempt(delivery_id, number)


def attempt(delivery_id: str, number: int) -> str:
    """Run attempt `number` of a delivery; what happened, in a word."""
    delivery = Delivery.objects.select_related("endpoint").filter(pk=delivery_id).first()
    if delivery is None or delivery.status != DeliveryStatus.PENDING or delivery.attempts != number - 1:
        return "skipped"
    if number > max_attempts():
        # The last attempt's worker died before it could tell.
        _give_up(delivery, f"Gave up after {delivery.attempts} attempts.")
        return "failed"
    if delivery.payload is None:
        # Built once, before the first attempt, outside the claim below: a rebuild takes row locks.
        delivery.payload = payloads.build(delivery.event_type, delivery.session_id, delivery.occurred_at)
        Delivery.objects.filter(pk=delivery.pk, payload__isnull=True).update(payload=delivery.payload)
    delivery = _claim(delivery_id, number)
    if delivery is None:
        return "skipped"
    outcome = send(delivery)
    _record(delivery, number, outcome)
    return "delivered" if outcome.ok else "failed"


def _claim(delivery_id: str, number: int) -> Delivery | None:
    """Count the attempt and queue the one after it, or None when it is not this attempt's turn."""
    with transaction.atomic():
        # The delivery's row only: attempts at one endpoint's deliveries run side by side.
        rows = Delivery.objects.select_for_update(of=("self",)).select_related("endpoint")
        delivery = rows.filter(pk=delivery_id).first()
        if delivery is None or delivery.status != DeliveryStatus.PENDING or delivery.attempts != number - 1:
            return None
        if not delivery.endpoint.active:
            _give_up(delivery, "The endpoint is disabled.")
            return None
        now = timezone.now()
        delivery.attempts, delivery.last_attempt_at = number, now
        # After the last attempt, the one queued only checks that it finished.
        delay = settings.WEBHOOK_RETRY_DELAYS[number - 1] if number < max_attempts() else 1
        delivery.next_attempt_at = now + timedelta(seconds=settings.WEBHOOK_TIMEOUT_SECONDS + delay)
        queue_attempt(delivery, number + 1, delivery.next_attempt_at)
        delivery.save(update_fields=["attempts", "last_attempt_at", "next_attempt_at"])
    return delivery


def send(delivery: Delivery) -> Outcome:
    """POST the payload, signed with the endpoint's secret(s); a 2xx answer within the timeout is success."""
    body = json.dumps(delivery.payload, separators=(",", ":"), ensure_ascii=False)
    signed_at = timezone.now()
    signatures = " ".join(
        Webhook(secret).sign(delivery.webhook_id, signed_at, body) for secret in delivery.endpoint.signing_secrets()
    )
    headers = {
        "content-type": "application/json",
        "user-agent": "avatar_site-webhooks",
        "webhook-id": delivery.webhook_id,
        "webhook-timestamp": str(int(signed_at.timestamp())),
        "webhook-signature": signatures,
    }
    try:
        response = httpx.post(
            delivery.endpoint.url,
            content=body.encode(),
            headers=headers,
            timeout=settings.WEBHOOK_TIMEOUT_SECONDS,
            follow_redirects=False,
        )
    except httpx.TimeoutException:
        return Outcome(False, error=f"No answer within {settings.WEBHOOK_TIMEOUT_SECONDS:g} s.")
    except httpx.HTTPError as exc:
        return Outcome(False, error=f"Could not connect: {type(exc).__name__}.")
    if 200 <= response.status_code < 300:
        return Outcome(True, response.status_code)
    return Outcome(False, response.status_code, f"The receiver answered {response.status_code}.")


def _record(delivery: Delivery, number: int, outcome: Outcome) -> None:
    fields = {"last_status_code": outcome.status_code, "last_error": outcome.error}
    if outcome.ok:
        fields.update(status=DeliveryStatus.DELIVERED, delivered_at=timezone.now(), next_attempt_at=None)
        delivery.endpoint.record_success()
    elif number >= max_attempts():
        fields.update(
            status=DeliveryStatus.FAILED,
            last_error=f"{outcome.error} Gave up after {number} attempts.",
            next_attempt_at=None,
        )
    # Only this attempt's row: a send again meanwhile has moved it on.
    Delivery.objects.filter(pk=delivery.pk, attempts=number).update(**fields)
    if not outcome.ok:
        log.info(
            "webhook %s to endpoint %s, attempt %d: %s",
            delivery.webhook_id,
            delivery.endpoint_id,
            number,
            outcome.error,
        )
        if delivery.endpoint.record_failure():
            log.warning("webhook endpoint %s disabled after repeated failures", delivery.endpoint_id)
            for pending in Delivery.objects.filter(endpoint=delivery.endpoint, status=DeliveryStatus.PENDING):
                _give_up(pending, "The endpoint was disabled after repeated failures.")


def _give_up(delivery: Delivery, reason: str) -> None:
    Delivery.objects.filter(pk=delivery.pk).update(
        status=DeliveryStatus.FAILED, last_error=reason, next_attempt_at=None
    )
