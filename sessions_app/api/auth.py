"""Who may call the REST API: an API key sent as a Bearer token, or a staff user's Django session.

Every operation names the scope it needs. A key that is unknown or revoked is no credential (401);
a good key without the scope is refused (403). Each key's requests are counted per minute on its
own row, so the limit holds across several Daphne processes; over the limit is 429.
"""

import math
from datetime import timedelta

from django.conf import settings
from django.db.models import Case, F, Value, When
from django.utils import timezone
from ninja.errors import AuthorizationError, Throttled
from ninja.security import APIKeyCookie, HttpBearer
from ninja.utils import check_csrf

from ..models import ApiKey

READ = "sessions:read"
WRITE = "sessions:write"
CONTROL = "sessions:control"


def use_key(raw_key: str) -> ApiKey | None:
    """The active key for raw_key, after counting this request in its current minute."""
    now = timezone.now()
    window = now.replace(second=0, microsecond=0)
    # One UPDATE both finds the key and counts the request atomically, whichever process runs it.
    found = (
        ApiKey.objects.active()
        .filter(key_hash=ApiKey.hash(raw_key))
        .update(
            last_used_at=now,
            window_requests=Case(When(window_started_at=window, then=F("window_requests") + 1), default=Value(1)),
            window_started_at=window,
        )
    )
    if not found:
        return None
    return ApiKey.objects.get(key_hash=ApiKey.hash(raw_key))


class ApiKeyAuth(HttpBearer):
    """`Authorization: Bearer <key>` for a key holding `scope`."""

    def __init__(self, scope: str):
        self.scope = scope
        super().__init__()

    def authenticate(self, request, token):
        key = use_key(token)
        if key is None:
            return None
        if key.window_requests > settings.API_THROTTLE_PER_MINUTE:
            window_end = key.window_started_at + timedelta(minutes=1)
            raise Throttled(wait=max(1, math.ceil((window_end - timezone.now()).total_seconds())))
        if not key.has_scope(self.scope):
            raise AuthorizationError(message=f"This API key does not have the {self.scope} scope.")
        return key


class StaffSessionAuth(APIKeyCookie):
    """Same-origin browser calls by a logged-in staff user; unsafe methods need the CSRF token.

    Holds every scope; an operation may also need a permission (`app_label.codename`). Not
    throttled: staff are trusted and are no API key.
    """

    param_name = settings.SESSION_COOKIE_NAME

    def __init__(self, permission: str | None = None):
        self.permission = permission
        super().__init__()

    def _get_key(self, request):
        # CSRF is checked in authenticate, and only for staff: otherwise an API client with a
        # wrong key would get "CSRF failed" (403) instead of 401.
        return request.COOKIES.get(self.param_name)

    def authenticate(self, request, key):
        user = request.user
        if not (key and user.is_authenticated and user.is_active and user.is_staff):
            return None
        if check_csrf(request):
            raise AuthorizationError(message="CSRF check failed: send the X-CSRFToken header.")
        if self.permission and not user.has_perm(self.permission):
            raise AuthorizationError(message=f"Your account does not have the {self.permission} permission.")
        return user


def caller(auth) -> str:
    """Who asked, as the record names callers (visitor_key, ended_by, a command's origin):
    "api:<key name>" or "staff:<username>"."""
    name = f"api:{auth.name}" if isinstance(auth, ApiKey) else f"staff:{auth.get_username()}"
    return name[:64]


def requires(scope: str, permission: str | None = None) -> list:
    """An API key with `scope`, or a staff user (with `permission`, when given)."""
    return [ApiKeyAuth(scope), StaffSessionAuth(permission)]
