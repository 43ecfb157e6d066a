"""Security headers Django does not set itself, and static files without leaving the event loop."""

from urllib.parse import urlsplit

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from whitenoise.middleware import WhiteNoiseMiddleware


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def content_security_policy() -> str:
    # The page talks to its own origin (API, websockets, emulator), to LiveAvatar's REST API and
    # to LiveAvatar's LiveKit servers; nothing else.
    # ('self' covers same-origin ws:// and wss:// in CSP 3.)
    connect = ["'self'"]
    if not settings.LIVEAVATAR_EMULATOR:
        connect += [_origin(settings.LIVEAVATAR_API_URL), *settings.LIVEAVATAR_LIVEKIT_HOSTS]
    return "; ".join([
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "media-src 'self' blob: mediastream:",
        f"connect-src {' '.join(connect)}",
        "frame-ancestors 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "object-src 'none'",
    ])


class ContentSecurityPolicyMiddleware:
    # Async-capable: one sync-only middleware makes Django run the whole chain below it, the
    # view included, in its single sync thread, serialising every request of the process.
    async_capable = True
    sync_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.policy = content_security_policy()
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self.__acall__(request)
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", self.policy)
        return response

    async def __acall__(self, request):
        response = await self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", self.policy)
        return response


class AsyncWhiteNoiseMiddleware(WhiteNoiseMiddleware):
    """WhiteNoise is sync-only (see above); this serves the same files from async code."""

    async_capable = True
    sync_capable = False

    def __init__(self, get_response=None, settings=settings):
        super().__init__(get_response, settings)
        markcoroutinefunction(self)

    async def __call__(self, request):
        static_file = self.find_file(request.path_info) if self.autorefresh else self.files.get(request.path_info)
        if static_file is not None:
            return await sync_to_async(self.serve)(static_file, request)
        return await self.get_response(request)
