"""/api/v1/webhooks: endpoints managed over REST (scope webhooks:write), in the site's NinjaAPI.

The signing secret is in the answer to the creation and to a rotation, and nowhere else.
"""

import datetime as dt
from typing import Literal

from ninja import Field, Router, Schema, Status
from ninja.errors import HttpError
from pydantic import ConfigDict

from sessions_app.api.api import AUTH_ERRORS, errors
from sessions_app.api.auth import caller, requires

from .models import EVENT_TYPES, Delivery, DeliveryStatus, Endpoint

SCOPE = "webhooks:write"
EventType = Literal[EVENT_TYPES]

router = Router(auth=requires(SCOPE), tags=["webhooks"])


# The whole rule is in the schema, so that what it allows is accepted: http(s), a host, then
# printable ASCII (spell other characters %-encoded). Not \s: regex dialects disagree on what it is.
HTTP_URL = r"^https?://[!-.0-9;-~]+(?::[0-9]{1,5})?(?:[/?#][!-~]*)?$"


class EndpointIn(Schema):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=500, pattern=HTTP_URL, examples=["https://crm.example.com/hooks/avatar"])
    events: list[EventType] = Field(min_length=1, description="Event types to send here.")
    profile: str = Field("", max_length=64, pattern=r"^[-a-zA-Z0-9_]*$", description="Only this profile's sessions.")
    active: bool = True


class EndpointPatch(Schema):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(None, max_length=500, pattern=HTTP_URL)
    events: list[EventType] | None = Field(None, min_length=1)
    profile: str | None = Field(None, max_length=64, pattern=r"^[-a-zA-Z0-9_]*$")
    active: bool | None = Field(None, description="true also re-enables an endpoint disabled after failures.")


class EndpointOut(Schema):
    id: int
    url: str
    events: list[str]
    profile: str
    active: bool
    consecutive_failures: int
    disabled_at: dt.datetime | None = Field(description="When repeated failures disabled it.")
    disabled_reason: str
    created_at: dt.datetime


class EndpointSecretOut(EndpointOut):
    secret: str = Field(description="whsec_…: verify deliveries with it. Shown this once only.")


class DeliveryOut(Schema):
    webhook_id: str
    event_type: str
    session_id: str
    occurred_at: dt.datetime
    status: DeliveryStatus
    attempts: int
    next_attempt_at: dt.datetime | None
    last_attempt_at: dt.datetime | None
    last_status_code: int | None
    last_error: str
    delivered_at: dt.datetime | None

    @staticmethod
    def resolve_session_id(delivery: Delivery) -> str:
        return str(delivery.session_id)


def _endpoint(endpoint_id: int) -> Endpoint:
    endpoint = Endpoint.objects.filter(pk=endpoint_id).first()
    if endpoint is None:
        raise HttpError(404, "No such webhook endpoint.")
    return endpoint


def _with_secret(endpoint: Endpoint, secret: str) -> dict:
    return {**EndpointOut.model_validate(endpoint).model_dump(), "secret": secret}


@router.get("", response={200: list[EndpointOut], **errors(*AUTH_ERRORS)}, summary="List webhook endpoints")
def list_endpoints(request):
    return Endpoint.objects.all()


@router.post(
    "",
    response={201: EndpointSecretOut, **errors(*AUTH_ERRORS, 400, 422)},
    summary="Add a webhook endpoint; the answer holds its signing secret, shown once",
)
def create_endpoint(request, body: EndpointIn):
    data = body.model_dump()
    data["events"] = sorted(set(data["events"]))
    endpoint = Endpoint.objects.create(**data, created_by=caller(request.auth))
    return Status(201, _with_secret(endpoint, endpoint.secret))


@router.get("/{endpoint_id}", response={200: EndpointOut, **errors(*AUTH_ERRORS, 404, 422)}, summary="One endpoint")
def get_endpoint(request, endpoint_id: int):
    return _endpoint(endpoint_id)


@router.patch(
    "/{endpoint_id}", response={200: EndpointOut, **errors(*AUTH_ERRORS, 400, 404, 422)}, summary="Change an endpoint"
)
def update_endpoint(request, endpoint_id: int, body: EndpointPatch):
    endpoint = _endpoint(endpoint_id)
    changes = body.model_dump(exclude_none=True)
    if "events" in changes:
        changes["events"] = sorted(set(changes["events"]))
    reenable = changes.pop("active", None) is True and not endpoint.active
    for name, value in changes.items():
        setattr(endpoint, name, value)
    if body.active is False:
        endpoint.active = False
    endpoint.save()
    if reenable:
        endpoint.enable()
    return endpoint


@router.delete("/{endpoint_id}", response={204: None, **errors(*AUTH_ERRORS, 404, 422)}, summary="Delete an endpoint")
def delete_endpoint(request, endpoint_id: int):
    _endpoint(endpoint_id).delete()
    return Status(204, None)


@router.post(
    "/{endpoint_id}/rotate-secret",
    response={200: EndpointSecretOut, **errors(*AUTH_ERRORS, 404, 422)},
    summary="Replace the signing secret; the new one is shown once, the old one signs too for 24 hours",
)
def rotate_secret(request, endpoint_id: int):
    endpoint = _endpoint(endpoint_id)
    return _with_secret(endpoint, endpoint.rotate_secret())


@router.get(
    "/{endpoint_id}/deliveries",
    response={200: list[DeliveryOut], **errors(*AUTH_ERRORS, 404, 422)},
    summary="The endpoint's latest deliveries, newest first (at most 100)",
)
def list_deliveries(request, endpoint_id: int):
    return _endpoint(endpoint_id).deliveries.all()[:100]
