"""Settings for avatar_site, read from environment variables.

Defaults give a working site on a fresh checkout: SQLite file, in-memory channel layer and the
built-in LiveAvatar emulator. DATABASE_URL, REDIS_URL and LIVEAVATAR_API_KEY switch to production
pieces. Combinations that cannot work are reported by system checks (sessions_app/checks.py).
"""

import os
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

BASE_DIR = Path(__file__).resolve().parent.parent


def envbool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}")


def envint(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}") from None


def envfloat(name: str, default: float) -> float:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {value!r}") from None


def envlist(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


# Core
DEBUG = envbool("DJANGO_DEBUG", False)
# An empty SECRET_KEY is replaced by a development key; check sessions_app.E001 refuses that
# combination when DEBUG is off and DJANGO_PRODUCTION is set.
PRODUCTION = envbool("DJANGO_PRODUCTION", False)
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
DEV_SECRET_KEY = "dev-insecure-avatar-site-key-change-me-in-production-0123456789"
if not SECRET_KEY:
    SECRET_KEY = DEV_SECRET_KEY
ALLOWED_HOSTS = envlist("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver,[::1]")
CSRF_TRUSTED_ORIGINS = envlist("DJANGO_CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    # django-ninja: its templates and static files serve the API docs offline (no CDN).
    "ninja",
    "sessions_app",
    "operations",
    "django_tasks_db",
    "privacy",
    "webhooks",
    "control",
    "profiles",
]

MIDDLEWARE = [
    "operations.logs.RequestContextMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "avatar_site.urls"
ASGI_APPLICATION = "avatar_site.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Database: SQLite file by default, DATABASE_URL (PostgreSQL) in production.
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        # Off: a health check is a `SELECT 1` before every database_sync_to_async call. A broken
        # connection fails one call instead (the ingest answers server_busy, the page re-sends) and
        # Django closes it right after (errors_occurred → is_usable() → close).
        conn_health_checks=envbool("DATABASE_CONN_HEALTH_CHECKS", False),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Persistent: with database_sync_to_async every call otherwise reconnects. Under ASGI an HTTP
    # request's calls run on a thread of the request's own, and its connection closes with it.
    DATABASES["default"]["CONN_MAX_AGE"] = envint("DATABASE_CONN_MAX_AGE", 60)
    # WAL lets the ingest write while the dashboard reads; the timeout rides out short locks.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # Live-server tests need a file database shared between processes. TEST_DB_SUFFIX lets
    # several test runs on one machine keep apart.
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / f"test-db{os.environ.get('TEST_DB_SUFFIX', '')}.sqlite3")}
else:
    # Django's pool, not persistent connections, as its docs advise under ASGI: a request's calls
    # run on a thread of its own, so a persistent connection was a new PostgreSQL session a visit.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        # A database that is down is reported within 3 s, not psycopg_pool's 30 s; a pool that has
        # no connection free for that long is overloaded, and the call fails as in an outage.
        "pool": {"min_size": 2, "max_size": envint("DATABASE_POOL_SIZE", 10), "timeout": 3},
        # Parameters travel apart from the statement (psycopg's C code dumps them) and repeated
        # statements get prepared, instead of psycopg merging every value into the SQL text in Python.
        "server_side_binding": True,
    }
    DATABASES["default"]["TEST"] = {"NAME": f"test_avatar_site{os.environ.get('TEST_DB_SUFFIX', '').replace('-', '_')}"}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Channel layer: in-memory (one process) by default, Redis when REDIS_URL is set.
REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    # Redis Pub/Sub: a group send is one PUBLISH, pushed to the processes that subscribed. The
    # original RedisChannelLayer stores every message in a sorted set per channel instead, and
    # each process polls and acknowledges each one: eight round trips a message in all, which cost
    # two processes about a tenth of their CPU in the scale-out bench. What goes through the layer
    # is a live view (the dashboard feed, the emulated room) that nobody missing it can use later,
    # and the at-most-once delivery of Pub/Sub is the delivery it needs: what must not be lost is
    # in the database. redis-py reads with a 5 s socket timeout by default; replies a moment late
    # (a busy loop) must not break a subscription, a dead server is still noticed within 15 s.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 15}]},
        }
    }
    # The live feed goes out at most this often, ten times a second: each send is a round trip to
    # Redis and a message on every receiving process.
    INGEST_FEED_PERIOD = 0.1
else:
    # The default capacity (100 messages a channel) silently drops the feed of a busy dashboard.
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 2000}}}
    INGEST_FEED_PERIOD = 0.0  # in memory a send costs little

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "admin:login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
FORMAT_MODULE_PATH = ["avatar_site.formats"]
USE_I18N = True
USE_TZ = True

# Static files: WhiteNoise serves them compressed, from STATIC_ROOT under hashed names (collectstatic
# writes them; `make run` and `make test` run it), cached for a year by browsers.
STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT") or BASE_DIR / "staticfiles")
STATICFILES_DIRS = [BASE_DIR / "static"]
# Serve straight from the source folders instead (development, and test servers that must see an
# edit at once): then under plain names, as there is no manifest to map them.
WHITENOISE_USE_FINDERS = envbool("WHITENOISE_USE_FINDERS", DEBUG)
WHITENOISE_AUTOREFRESH = WHITENOISE_USE_FINDERS
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"
        if WHITENOISE_USE_FINDERS
        else "avatar_site.static_storage.HashedStaticStorage"
    },
}

# Security. HTTPS settings apply when DJANGO_HTTPS says TLS terminates in front of Daphne.
HTTPS = envbool("DJANGO_HTTPS", False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if HTTPS else None
SECURE_SSL_REDIRECT = HTTPS
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = 31536000 if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
# Content-Security-Policy: SECURE_CSP, set below with the LiveAvatar settings it depends on.
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024

# Logs: readable lines by default, one JSON object a line with LOG_FORMAT=json (operations/logs.py).
# Either way each line carries its request and session ids, and no secret of these settings.
LOG_FORMAT = os.environ.get("LOG_FORMAT", "plain")
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be plain or json, not {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "context": {"()": "operations.logs.ContextFields"},
        "redact": {"()": "operations.logs.RedactSecrets"},
    },
    "formatters": {
        "plain": {"()": "operations.logs.PlainFormatter", "format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "operations.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["context", "redact"]}
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        # httpx logs every request line at INFO; keep it quiet.
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
        # The emulated room's WebRTC stack logs each ICE pair and state change at INFO.
        "aioice": {"level": "WARNING"},
        "aiortc": {"level": "WARNING"},
    },
}

# LiveAvatar. With no API key the built-in emulator is mounted and the client points at it.
LIVEAVATAR_API_KEY = os.environ.get("LIVEAVATAR_API_KEY", "")
LIVEAVATAR_EMULATOR = not LIVEAVATAR_API_KEY
LIVEAVATAR_API_URL = os.environ.get("LIVEAVATAR_API_URL", "https://api.liveavatar.com").rstrip("/")
# Where the server reaches the emulator. Empty: in process, through httpx's ASGI transport, so no
# port has to be known. The browser always gets a same-origin URL built from its request.
LIVEAVATAR_EMULATOR_URL = os.environ.get("LIVEAVATAR_EMULATOR_URL", "").rstrip("/")
# The httpx transport of the LiveAvatar client: a function that returns one (or its dotted path), or
# empty for the network. The emulator in process is reached through the site's own ASGI application.
LIVEAVATAR_TRANSPORT = (
    "avatar_site.asgi.in_process_transport" if LIVEAVATAR_EMULATOR and not LIVEAVATAR_EMULATOR_URL else ""
)
SANDBOX_AVATAR_ID = "dd73ea75-1218-4ef3-92ce-606d5f7fbc0a"  # Wayne, the only sandbox avatar
LIVEAVATAR_AVATAR_ID = os.environ.get("LIVEAVATAR_AVATAR_ID", SANDBOX_AVATAR_ID)
LIVEAVATAR_VOICE_ID = os.environ.get("LIVEAVATAR_VOICE_ID", "")
LIVEAVATAR_CONTEXT_ID = os.environ.get("LIVEAVATAR_CONTEXT_ID", "")
LIVEAVATAR_LANGUAGE = os.environ.get("LIVEAVATAR_LANGUAGE", "en")
LIVEAVATAR_SANDBOX = envbool("LIVEAVATAR_SANDBOX", False)
LIVEAVATAR_INTERACTIVITY = os.environ.get("LIVEAVATAR_INTERACTIVITY", "CONVERSATIONAL")
LIVEAVATAR_VIDEO_QUALITY = os.environ.get("LIVEAVATAR_VIDEO_QUALITY", "high")
LIVEAVATAR_MAX_SESSION_SECONDS = envint("LIVEAVATAR_MAX_SESSION_SECONDS", 600)
# LiveKit servers the browser may connect to (Content-Security-Policy connect-src).
LIVEAVATAR_LIVEKIT_HOSTS = envlist("LIVEAVATAR_LIVEKIT_HOSTS", "wss://*.livekit.cloud,https://*.livekit.cloud")
LIVEAVATAR_TIMEOUT_SECONDS = envfloat("LIVEAVATAR_TIMEOUT_SECONDS", 10.0)
LIVEAVATAR_MAX_RETRIES = envint("LIVEAVATAR_MAX_RETRIES", 2)
# Who calls /v1/sessions/start: "browser" (the page, with the session token) or "server" (the page
# gets only the LiveKit room; the session token stays here, and keep-alive and stop go through us).
LIVEAVATAR_SESSION_START = os.environ.get("LIVEAVATAR_SESSION_START", "browser")

# The page talks to its own origin (API, websockets, emulator), to LiveAvatar's REST API and to
# LiveAvatar's LiveKit servers; nothing else. ('self' covers same-origin ws:// and wss:// in CSP 3.)
# The emulated room's livekit_url when it is not reached on the host that served the start
# (e.g. ws://127.0.0.1:PORT/liveavatar-emulator for a proxy in front of it).
EMULATOR_LIVEKIT_URL = os.environ.get("EMULATOR_LIVEKIT_URL", "").rstrip("/")
_connect_src = [CSP.SELF]
if LIVEAVATAR_EMULATOR and EMULATOR_LIVEKIT_URL:
    # Its websocket, and the https side livekit-client asks after a refused upgrade.
    _room = urlsplit(EMULATOR_LIVEKIT_URL)
    _connect_src += [f"{_room.scheme}://{_room.netloc}", f"{_room.scheme.replace('ws', 'http')}://{_room.netloc}"]
if not LIVEAVATAR_EMULATOR:
    _api = urlsplit(LIVEAVATAR_API_URL)
    _connect_src += [f"{_api.scheme}://{_api.netloc}", *LIVEAVATAR_LIVEKIT_HOSTS]
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:", "blob:"],
    "media-src": [CSP.SELF, "blob:", "mediastream:"],
    "connect-src": _connect_src,
    "frame-ancestors": [CSP.NONE],
    "base-uri": [CSP.SELF],
    "form-action": [CSP.SELF],
    "object-src": [CSP.NONE],
}

# The emulator wants an API key too; the client sends this one to it, never the real key.
EMULATOR_API_KEY = "emulator-api-key"
# Emulator: speed factor for simulated speech and timers (tests use a large one), and the
# LiveKit-style API key/secret its room tokens are signed with.
EMULATOR_SPEED = envfloat("EMULATOR_SPEED", 1.0)
EMULATOR_LIVEKIT_API_KEY = os.environ.get("EMULATOR_LIVEKIT_API_KEY", "emulator-key")
EMULATOR_LIVEKIT_API_SECRET = os.environ.get(
    "EMULATOR_LIVEKIT_API_SECRET", "emulator-secret-that-is-long-enough-for-hs256-signing"
)
# What the emulator signs its session tokens (JWTs, as the real API's) with.
EMULATOR_SESSION_TOKEN_SECRET = os.environ.get(
    "EMULATOR_SESSION_TOKEN_SECRET", "emulator-session-token-secret-long-enough-for-hs256"
)

# Visitors: how many tokens one visitor may mint per minute.
MINT_RATE_PER_MINUTE = envint("MINT_RATE_PER_MINUTE", 10)
# Per client address as well (higher: an office or a mobile carrier shares one address).
MINT_RATE_PER_ADDRESS_PER_MINUTE = envint("MINT_RATE_PER_ADDRESS_PER_MINUTE", 30)

# Ingest of forwarded events.
INGEST_CREDENTIAL_MAX_AGE = envint("INGEST_CREDENTIAL_MAX_AGE", 6 * 3600)
INGEST_MAX_MESSAGE_BYTES = envint("INGEST_MAX_MESSAGE_BYTES", 64 * 1024)
INGEST_MAX_BATCH = envint("INGEST_MAX_BATCH", 200)
INGEST_RATE_PER_SECOND = envint("INGEST_RATE_PER_SECOND", 50)
INGEST_RATE_BURST = envint("INGEST_RATE_BURST", 400)

# Orphans: an active session with no event and no websocket for this long is stopped.
ORPHAN_GRACE_SECONDS = envint("ORPHAN_GRACE_SECONDS", 120)
# A token never started is marked expired after this long.
TOKEN_EXPIRY_SECONDS = envint("TOKEN_EXPIRY_SECONDS", 3600)
# How often the in-process reaper (make run) looks; 0 turns it off.
REAPER_INTERVAL_SECONDS = envint("REAPER_INTERVAL_SECONDS", 30)
# An expired token's row (a visit that never started a conversation) is deleted this long after it expired.
PURGE_EXPIRED_AFTER_SECONDS = envint("PURGE_EXPIRED_AFTER_SECONDS", 86400)
# An event whose page clock (ts) is further than this from the server's is stored flagged.
CLOCK_SKEW_SECONDS = envint("CLOCK_SKEW_SECONDS", 300)

# Profiles and budgets. The default profile (served at /) is seeded from the LIVEAVATAR_* settings
# on the first migrate; after that it is edited in the admin or the API.
DEFAULT_PROFILE_SLUG = os.environ.get("DEFAULT_PROFILE_SLUG", "default")
# Conversations the whole site may run at once (0: no limit), whatever each profile allows.
MAX_LIVE_SESSIONS = envint("MAX_LIVE_SESSIONS", 0)
# Where a live-session cap applies, a token minted but not started holds its place this long; then it
# is void (stopped at LiveAvatar) and the place is free again.
BUDGET_START_HOLD_SECONDS = envint("BUDGET_START_HOLD_SECONDS", 60)
# A token is minted only with at least this many seconds of budget left.
BUDGET_MIN_SESSION_SECONDS = envint("BUDGET_MIN_SESSION_SECONDS", 30)
# How long the admin keeps LiveAvatar's catalogue (avatars, voices, contexts, voice agents).
CATALOGUE_CACHE_SECONDS = envint("CATALOGUE_CACHE_SECONDS", 3600)

# REST API
API_THROTTLE_PER_MINUTE = envint("API_THROTTLE_PER_MINUTE", 120)

# Operations: who may scrape /metrics without a staff login (Authorization: Bearer <token>), and
# the LiveAvatar account box: how long a credits reading is reused, and when it warns.
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")
LIVEAVATAR_CREDITS_CACHE_SECONDS = envint("LIVEAVATAR_CREDITS_CACHE_SECONDS", 180)
LIVEAVATAR_CREDITS_WARNING = envint("LIVEAVATAR_CREDITS_WARNING", 100)
LIVEAVATAR_RUN_OUT_WARNING_HOURS = envint("LIVEAVATAR_RUN_OUT_WARNING_HOURS", 24)
# The emulated account's credits before its sessions use any (2 a minute, as LiveAvatar's FULL mode).
EMULATOR_CREDITS = envfloat("EMULATOR_CREDITS", 1000.0)
# Background tasks (webhook deliveries, the retention purge): Django's tasks framework, stored in the
# database so they survive restarts; `manage.py db_worker` runs them (make run starts one).
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}

# Privacy: personal data replaced before any text is stored (privacy/redaction.py). Phone numbers
# written without + are read as numbers of REDACTION_REGION (ISO country code).
REDACTION_ENABLED = envbool("REDACTION_ENABLED", True)
REDACTION_KINDS = envlist("REDACTION_KINDS", "email,phone,card,iban")
REDACTION_REGION = os.environ.get("REDACTION_REGION", "US").upper()
# Retention: sessions older than this many days are purged with everything stored of them, here and
# at LiveAvatar. "forever" (the default) keeps them.
_retention = os.environ.get("RETENTION_DAYS", "forever").strip().lower()
RETENTION_DAYS = None if _retention in ("", "forever") else envint("RETENTION_DAYS", 0)
if RETENTION_DAYS is not None and RETENTION_DAYS < 1:
    raise ImproperlyConfigured(f"RETENTION_DAYS must be a number of days (1 or more) or forever, not {_retention!r}")
RETENTION_PURGE_INTERVAL_SECONDS = envint("RETENTION_PURGE_INTERVAL_SECONDS", 3600)

# Webhooks: each attempt waits this long for an answer; a failed delivery is tried again after each
# delay in turn (seconds, over about a day), and an endpoint is disabled after this many failed
# attempts in a row.
WEBHOOK_TIMEOUT_SECONDS = envfloat("WEBHOOK_TIMEOUT_SECONDS", 10.0)
WEBHOOK_RETRY_DELAYS = [float(d) for d in envlist("WEBHOOK_RETRY_DELAYS", "5,300,1800,7200,18000,36000,36000")]
WEBHOOK_DISABLE_AFTER_FAILURES = envint("WEBHOOK_DISABLE_AFTER_FAILURES", 15)
# What follows a session's end (session.ended, redaction counts) waits this long for its last events
# and its transcript to settle.
SESSION_SETTLE_SECONDS = envfloat("SESSION_SETTLE_SECONDS", 2.0)
# Live control: staff and API clients send commands to a live conversation through its page.
CONTROL_RATE_PER_MINUTE = envint("CONTROL_RATE_PER_MINUTE", 30)  # per conversation
CONTROL_MAX_TEXT_CHARS = envint("CONTROL_MAX_TEXT_CHARS", 1000)  # as much as a visitor may type
CONTROL_CONFIRM_SECONDS = envfloat("CONTROL_CONFIRM_SECONDS", 5.0)  # the page's answer, or 504
# Whether the visitor sees which avatar lines staff or a system sent (site-wide for now).
CONTROL_MARK_OPERATOR_LINES = envbool("CONTROL_MARK_OPERATOR_LINES", True)

if LIVEAVATAR_EMULATOR:
    INSTALLED_APPS.append("sessions_app.emulator")
