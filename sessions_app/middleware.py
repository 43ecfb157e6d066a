"""Security headers Django does not set itself, and static files without leaving the event loop."""

from urllib.parse import urlsplit

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.contrib.auth import middleware as auth
from django.contrib.messages import middleware as messages
from django.contrib.sessions import middleware as sessions
from django.middleware import clickjacking, common, csrf, security
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
    return "; ".join(
        [
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
        ]
    )


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


# Django's MiddlewareMixin runs every process_request/process_response of an async request through
# sync_to_async, a hop to the one sync thread and back: twelve a page, about 5 ms under load. These
# subclasses run the hooks in the event loop when they do no I/O (headers, cookies, lazy objects),
# and keep the hop only when they would reach the database (saving a session, messages stored in it).


class _InLoopMixin:
    async def __acall__(self, request):
        response = None
        if hasattr(self, "process_request"):
            response = self.process_request(request)
        response = response or await self.get_response(request)
        if hasattr(self, "process_response"):
            if self._response_needs_thread(request):
                return await sync_to_async(self.process_response, thread_sensitive=True)(request, response)
            response = self.process_response(request, response)
        return response

    def _response_needs_thread(self, request) -> bool:
        return False


class SecurityMiddleware(_InLoopMixin, security.SecurityMiddleware):
    pass


class SessionMiddleware(_InLoopMixin, sessions.SessionMiddleware):
    # process_request only builds the lazy store; process_response saves it only when modified.
    def _response_needs_thread(self, request) -> bool:
        return request.session.modified or settings.SESSION_SAVE_EVERY_REQUEST


class CommonMiddleware(_InLoopMixin, common.CommonMiddleware):
    pass


class CsrfViewMiddleware(_InLoopMixin, csrf.CsrfViewMiddleware):
    # With CSRF_USE_SESSIONS the token lives in the session (database): keep Django's hops then.
    def __init__(self, get_response):
        super().__init__(get_response)
        if not settings.CSRF_USE_SESSIONS:
            sync_view = super().process_view

            async def process_view(request, callback, callback_args, callback_kwargs):
                return sync_view(request, callback, callback_args, callback_kwargs)

            self.process_view = process_view

    async def __acall__(self, request):
        if settings.CSRF_USE_SESSIONS:
            return await csrf.CsrfViewMiddleware.__acall__(self, request)
        return await super().__acall__(request)


class AuthenticationMiddleware(_InLoopMixin, auth.AuthenticationMiddleware):
    pass  # request.user stays lazy: loaded on first use (async views use await request.auser())


class MessageMiddleware(_InLoopMixin, messages.MessageMiddleware):
    # Messages that were read or added may be stored in the session (FallbackStorage): then the thread.
    def _response_needs_thread(self, request) -> bool:
        storage = getattr(request, "_messages", None)
        return storage is not None and (storage.used or storage.added_new)


class XFrameOptionsMiddleware(_InLoopMixin, clickjacking.XFrameOptionsMiddleware):
    pass
