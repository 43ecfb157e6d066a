"""URLs of /api/v1/: ninja's, with JSON for the two answers ninja leaves to Django (404, 405)."""

import functools
from inspect import iscoroutinefunction

from django.urls import URLPattern, re_path
from django.views.decorators.csrf import csrf_exempt
from ninja.errors import HttpError

from .api import api, error, on_http_error

patterns, _, namespace = api.urls


def _json_405(view):
    """Ninja answers a method an operation lacks with a plain-text 405; make it our JSON error."""

    def fix(request, response):
        if response.status_code != 405:
            return response
        fixed = error(request, 405, f"Use {response['Allow']}.")
        fixed["Allow"] = response["Allow"]
        return fixed

    if iscoroutinefunction(view):

        @functools.wraps(view)
        async def wrapped(request, *args, **kwargs):
            return fix(request, await view(request, *args, **kwargs))
    else:

        @functools.wraps(view)
        def wrapped(request, *args, **kwargs):
            return fix(request, view(request, *args, **kwargs))

    return wrapped


@csrf_exempt  # no such endpoint: a CSRF 403 would hide the 404
def not_found(request, rest):
    return on_http_error(request, HttpError(404, f"No API endpoint at /api/v1/{rest}."))


# Ninja reverses its own views as "<urls_namespace>:name", so that is this module's namespace.
app_name = namespace
urlpatterns = [
    *(URLPattern(p.pattern, _json_405(p.callback), p.default_args, p.name) for p in patterns),
    re_path(r"^(?P<rest>.*)$", not_found),
]
