"""ipr settings, read from the environment (see the README for each variable).

With no variables set, ipr runs on SQLite in its data directory and runs
Celery tasks in process, so a first run needs nothing but Python.
DATABASE_URL switches to PostgreSQL (psycopg 3), REDIS_URL to a real Celery
broker. The Debian package sets them in /etc/ipr/ipr.env (docs/install.md).
"""
import importlib.util
import ipaddress
import os
import secrets
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

import csp.constants as csp
import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from collector.config import parse_hostport
from ipr.env import env, envbool, envint, envlist

BASE_DIR = Path(__file__).resolve().parent.parent


def _default_data_dir() -> Path:
    """./var of a checkout; installed, the user's XDG data directory (the
    Debian package sets IPR_DATA_DIR=/var/lib/ipr). Never the working
    directory, so a command means the same wherever it is run."""
    if (BASE_DIR / "manage.py").exists():
        return BASE_DIR / "var"
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "ipr"


DATA_DIR = Path(env("IPR_DATA_DIR") or _default_data_dir()).resolve()

DEBUG = envbool("IPR_DEBUG", False)
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", [])

# Behind a TLS proxy (docs/install.md). IPR_HTTPS says the UI is served over
# HTTPS only: cookies are sent over HTTPS only, plain HTTP is redirected and
# browsers are told by HSTS to use HTTPS. IPR_PROXY_SSL_HEADER names the
# header by which the proxy says a request came over HTTPS (nginx:
# proxy_set_header X-Forwarded-Proto $scheme); trust it only when every
# request comes through that proxy.
HTTPS = envbool("IPR_HTTPS", False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = SECURE_SSL_REDIRECT = HTTPS
# The health check stays reachable over plain HTTP from the
# host itself (monitoring probes 127.0.0.1 without TLS).
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = envint("IPR_HSTS_SECONDS", 31536000 if HTTPS else 0, 0, 10 * 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("IPR_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = envbool("IPR_HSTS_PRELOAD", False)
_proxy_header = env("IPR_PROXY_SSL_HEADER")
if _proxy_header:
    SECURE_PROXY_SSL_HEADER = ("HTTP_" + _proxy_header.upper().replace("-", "_"), "https")
# Adding a domain to the browsers' HSTS preload list is the domain owner's
# decision, not ipr's: without IPR_HSTS_PRELOAD, `check --deploy` does not
# ask for it. Subdomains likewise.
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]
if not SECURE_HSTS_INCLUDE_SUBDOMAINS:
    SILENCED_SYSTEM_CHECKS.append("security.W005")


def _secret_key() -> str:
    """SECRET_KEY from the environment, or one made once and kept in DATA_DIR."""
    value = env("SECRET_KEY")
    if value is not None:
        if len(value) < 32:
            raise ImproperlyConfigured("SECRET_KEY must be at least 32 characters")
        return value
    path = DATA_DIR / "secret_key"
    if not path.exists():
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        # Written whole, mode 0600, beside it, then linked into place: of two
        # processes starting at once, one key wins and both read it complete.
        fd, tmp = tempfile.mkstemp(dir=DATA_DIR, prefix=".secret_key.")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(48))
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    return path.read_text().strip()


SECRET_KEY = _secret_key()

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "ipr.traffic",
    "ipr.routing",
    "ipr.web",
    "ipr.agents",
    "ipr.api",
    "ipr.alerts",
    "django_celery_beat",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and Redoc, served from here: no CDN
    "axes",  # login throttling (below)
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",  # Content-Security-Policy (below)
    # Serves the admin's (and later the pages') static files from gunicorn,
    # straight from the installed apps: no collectstatic step, no CDN.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into a 429 page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "ipr.urls"
WSGI_APPLICATION = "ipr.wsgi.application"
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "DIRS": [],
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]


def _database() -> dict:
    url = env("DATABASE_URL", f"sqlite:///{DATA_DIR / 'ipr.sqlite3'}")
    try:
        db = dj_database_url.parse(url, conn_max_age=envint("DATABASE_CONN_MAX_AGE", 60, 0, 86400))
    except ValueError as exc:
        raise ImproperlyConfigured(f"DATABASE_URL: {exc}") from None
    engine = db.get("ENGINE", "")
    if engine not in ("django.db.backends.postgresql", "django.db.backends.sqlite3"):
        raise ImproperlyConfigured(f"DATABASE_URL: ipr runs on PostgreSQL or SQLite, not {engine}")
    if engine.endswith("sqlite3"):
        Path(db["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    return db


DATABASES = {"default": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
WHITENOISE_USE_FINDERS = True
# The pages' charts: plotly.js as the plotly package ships it, served as
# static/vendor/plotly/plotly.min.js (no CDN, nothing fetched at run time).
_plotly = importlib.util.find_spec("plotly")
STATICFILES_DIRS = [("vendor/plotly", str(Path(p) / "package_data"))
                    for p in (_plotly.submodule_search_locations if _plotly else [])]
# The world map's geometry: world-atlas's countries-110m.json, which set-up
# fetches into the environment's share/ipr/world-atlas (packaging/world-atlas),
# served as static/vendor/world-atlas/countries-110m.json.
_world_atlas = Path(sys.prefix) / "share" / "ipr" / "world-atlas"
if _world_atlas.is_dir():
    STATICFILES_DIRS.append(("vendor/world-atlas", str(_world_atlas)))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise looks there too

# The collector's spool (written by `python -m collector`, read by the
# aggregation tasks) and the sender key file the collector reads.
SPOOL_DIR = Path(env("IPR_SPOOL_DIR", str(DATA_DIR / "spool"))).resolve()
KEY_FILE = Path(env("IPR_KEY_FILE", str(DATA_DIR / "keys.json"))).resolve()
# The collector's address as the web servers reach it, for the snippets the
# admin shows with each sender key.
COLLECTOR_ADDRESS = env("IPR_COLLECTOR_ADDRESS", "127.0.0.1:9477")
try:  # an IP address and a port, as the nginx module requires
    parse_hostport(COLLECTOR_ADDRESS, "IPR_COLLECTOR_ADDRESS")
except ValueError as exc:
    raise ImproperlyConfigured(str(exc)) from None
# A closed segment waiting longer than this means the aggregation is behind.
SPOOL_MAX_BACKLOG_SECONDS = envint("IPR_SPOOL_MAX_BACKLOG_SECONDS", 300, 1)
# A claimed segment is taken back (and reported as stale by the health check
# and /metrics) once its claim is older than this; at once when its worker
# was a process of this host that no longer runs.
STALE_CLAIM_SECONDS = envint("IPR_STALE_CLAIM_SECONDS", 60, 1)

# Celery: a real broker with REDIS_URL, else every task runs in process.
REDIS_URL = env("REDIS_URL")
if REDIS_URL is not None and not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
    raise ImproperlyConfigured(f"REDIS_URL={REDIS_URL!r}: expected redis://, rediss:// or unix://")
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_TASK_ALWAYS_EAGER = REDIS_URL is None
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# The beat schedule is in the database, edited in the admin (cron/schedule.py).
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"

LOG_LEVEL = env("IPR_LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in ("DEBUG", "INFO", "WARNING", "ERROR"):
    raise ImproperlyConfigured(f"IPR_LOG_LEVEL={LOG_LEVEL!r}: expected DEBUG, INFO, WARNING or ERROR")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # Under systemd, each line carries its priority for the journal and no
    # time stamp (collector/logs.py).
    "formatters": {"plain": {"()": "collector.logs.LineFormatter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
}

# Routing tables: how many retired versions of each router's table to keep
# beside the active one (a worker may still be reading the previous one).
ROUTING_KEEP_RETIRED = envint("IPR_ROUTING_KEEP_RETIRED", 1, 0, 100)
# Special-purpose addresses (loopback, private-use, documentation...: ipr.routing.special)
# are no AS's and no country's, whatever the routers' tables say, except in
# the networks listed here, which the tables resolve like any address (an
# internal 10.0.0.0/8 that your own routers carry). None by default.
try:
    ROUTE_SPECIAL = [str(ipaddress.ip_network(n)) for n in envlist("IPR_ROUTE_SPECIAL", [])]
except ValueError as exc:
    raise ImproperlyConfigured(f"IPR_ROUTE_SPECIAL: {exc}") from None

# The archive: how long each resolution is kept (the retention task drops
# older rows; whole partitions on PostgreSQL).
KEEP_CURRENT_HOURS = envint("IPR_KEEP_CURRENT_HOURS", 48, 1)
KEEP_HOURLY_DAYS = envint("IPR_KEEP_HOURLY_DAYS", 90, 1)
KEEP_DAILY_DAYS = envint("IPR_KEEP_DAILY_DAYS", 1830, 1)
# The Celery queues that ingest a spool: one per collector host, each served
# by a worker on that host. The default queue suits one host.
INGEST_QUEUES = envlist("IPR_INGEST_QUEUES", ["celery"])
# Minutes after an hour's end before the hourly archive computes it (late
# segments of it are folded in by computing it again).
ARCHIVE_GRACE_MINUTES = envint("IPR_ARCHIVE_GRACE_MINUTES", 3, 0, 1440)
# A batch of claimed segments, ingested in one transaction, is closed once
# it holds this many spool rows (a segment is never split). Bigger batches
# are slower per row: a backlog went at 550,000 rows/s in batches of 200,000
# rows and at 340,000 in batches of 1,000,000 (docs/performance.md).
INGEST_BATCH_ROWS = envint("IPR_INGEST_BATCH_ROWS", 200_000, 1000, 50_000_000)

# E-mail, for alerts (docs/regressions.md): Django's SMTP backend with
# these, or IPR_EMAIL_BACKEND (e.g. django.core.mail.backends.console.EmailBackend).
EMAIL_BACKEND = env("IPR_EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = env("IPR_EMAIL_HOST", "localhost")
EMAIL_PORT = envint("IPR_EMAIL_PORT", 25, 1, 65535)
EMAIL_HOST_USER = env("IPR_EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env("IPR_EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = envbool("IPR_EMAIL_USE_TLS", False)
EMAIL_USE_SSL = envbool("IPR_EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = envint("IPR_EMAIL_TIMEOUT", 10, 1, 600)
DEFAULT_FROM_EMAIL = env("IPR_EMAIL_FROM", "ipr@localhost")

# The REST API (docs/api.md): a token (or the browsable API's session) is
# required everywhere, the schema and its docs included.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # First, so that a request without credentials gets 401 with
        # "WWW-Authenticate: Token" rather than a bare 403.
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 100,
    # An unknown ?format= (or ?format=csv where there is no table) is a 406
    # that says so, not a bare 404.
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "ipr.api.negotiation.Negotiation",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "ipr API",
    "DESCRIPTION": "Web-server traffic per prefix, origin AS, neighbour AS, country, router and traffic type.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# ipr's Prometheus endpoint, /metrics (docs/operations.md). With a token,
# every scrape must send "Authorization: Bearer <token>"; without one, only
# requests from this host that no proxy passed on are answered.
METRICS_TOKEN = env("IPR_METRICS_TOKEN") or None
# The characters a bearer token may have (RFC 6750), and enough of them.
if METRICS_TOKEN is not None and (len(METRICS_TOKEN) < 16 or not set(METRICS_TOKEN) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/=")):
    raise ImproperlyConfigured("IPR_METRICS_TOKEN: expected at least 16 characters of A-Z, a-z, 0-9 "
                               "and -._~+/= (e.g. from `openssl rand -hex 32`)")
# Prometheus scrapes 127.0.0.1 without TLS, as the health check is probed.
SECURE_REDIRECT_EXEMPT = [*SECURE_REDIRECT_EXEMPT, r"^metrics$", r"^metrics/quality$"]
# /metrics/quality: delivery quality of the largest origin ASes and
# countries and of the largest uplinks, the rest as "other"; the hard caps
# bound its series (docs/operations.md).
QUALITY_METRICS_TOP = envint("IPR_QUALITY_METRICS_TOP", 20, 1, 100)
QUALITY_METRICS_UPLINKS = envint("IPR_QUALITY_METRICS_UPLINKS", 50, 1, 200)

# Login throttling (django-axes; docs/install.md): after IPR_LOGIN_FAILURES
# wrong passwords for one username from one client address, that pair is
# refused for IPR_LOGIN_COOLOFF_MINUTES, on the pages' login, the admin's
# and the browsable API's alike (every password check goes through
# authenticate()). A success clears the count. Failures are kept in the
# database, so every gunicorn worker sees them.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = envint("IPR_LOGIN_FAILURES", 5, 1, 1000)
AXES_COOLOFF_TIME = timedelta(minutes=envint("IPR_LOGIN_COOLOFF_MINUTES", 15, 1, 7 * 24 * 60))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False  # the cool-off runs from the locking failure
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_CLIENT_IP_CALLABLE = "ipr.web.security.client_ip"
AXES_VERBOSE = False
# The client address behind a reverse proxy: read from IPR_CLIENT_IP_HEADER
# only on requests from the proxies IPR_TRUSTED_PROXIES names (addresses or
# networks; none by default: the peer address is the client).
try:
    TRUSTED_PROXIES = [ipaddress.ip_network(n, strict=False) for n in envlist("IPR_TRUSTED_PROXIES", [])]
except ValueError as exc:
    raise ImproperlyConfigured(f"IPR_TRUSTED_PROXIES: {exc}") from None
CLIENT_IP_META = "HTTP_" + env("IPR_CLIENT_IP_HEADER", "X-Forwarded-For").upper().replace("-", "_")

# Content-Security-Policy (django-csp): everything from this site, nothing
# from another host; no inline script anywhere (the chart data is a JSON
# block, read by charts.js). Inline styles only on the API's Swagger UI and
# Redoc pages, whose bundles write <style> elements (ipr/api/urls.py).
CONTENT_SECURITY_POLICY = {"DIRECTIVES": {
    "default-src": [csp.SELF],
    "script-src": [csp.SELF],
    # plotly.js adds two <style> elements as it loads: an empty one it then
    # fills through the CSSOM, and the map library's CSS. Each is allowed
    # by its hash (plotly.js 4.1.1, of plotly==7.1.0; the browser test
    # fails on a violation, so an upgrade that changes them is seen).
    "style-src": [csp.SELF, "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='",
                  "'sha256-ji27qzEtxXZW+7dun6UwjHXJ18e6WAin1VvNtkzIE/o='"],
    # plotly.js also sets style attributes as it draws (d3's .attr("style")):
    # those are allowed inline, <style> elements are not.
    "style-src-attr": [csp.UNSAFE_INLINE],
    "img-src": [csp.SELF, "data:"],
    "font-src": [csp.SELF],
    "connect-src": [csp.SELF],
    "object-src": [csp.NONE],
    "base-uri": [csp.SELF],
    "form-action": [csp.SELF],
    "frame-ancestors": [csp.NONE],
}}
