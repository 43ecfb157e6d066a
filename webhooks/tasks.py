from django.tasks import task

from . import delivery


@task
def deliver(delivery_id: str, attempt: int) -> str:
    """One attempt of a webhook delivery (webhooks/delivery.py)."""
    return delivery.attempt(delivery_id, attempt)
