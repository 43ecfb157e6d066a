"""Security headers Django does not set itself."""

from urllib.parse import urlsplit

from django.conf import settings


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
    def __init__(self, get_response):
        self.get_response = get_response
        self.policy = content_security_policy()

    def __call__(self, request):
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", self.policy)
        return response
