"""Django settings for ConflictDesk, read once from the environment.

Every value comes through the typed helpers in ``conflictdesk.env`` (a bad value
fails at start-up, not at first use). Production (DJANGO_DEBUG unset or 0, the
default) refuses to start without a secret key, allowed hosts and a database, and
turns on secure cookies and HSTS; development (DJANGO_DEBUG=1: the Makefile, the
demo and the tests set it) has safe local defaults.
Sections follow concerns, not history: core, database, cache (rate limits),
authentication, security, e-mail, API, Celery and its schedule, the sync
engine, the desk, metrics, logging, demo. SECURITY.md says why the security
settings are what they are.
"""
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from .env import env_bool, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent

# --- core --------------------------------------------------------------------
# Off unless asked for: a bare start (a plain `docker run`) must never get the dev key or an open /metrics.
DEBUG = env_bool("DJANGO_DEBUG", False)

SECRET_KEY = env_str("DJANGO_SECRET_KEY")
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS")
if DEBUG:
    SECRET_KEY = SECRET_KEY or "dev-only-insecure-key-never-in-production"
    ALLOWED_HOSTS = ALLOWED_HOSTS or ["127.0.0.1", "localhost", "testserver"]
else:
    if not SECRET_KEY:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY is required when DJANGO_DEBUG=0")
    if not ALLOWED_HOSTS:
        raise ImproperlyConfigured("DJANGO_ALLOWED_HOSTS is required when DJANGO_DEBUG=0")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    # API tokens stored as SHA-512 digests with an expiry (django-rest-knox), never in plain text
    "knox",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "csp",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "audit",
    "sync",
    "conflictdesk.desk",
    "conflictdesk.api",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Before anything reads a body: DRF's parsers bypass Django's own size check.
    "conflictdesk.middleware.BodySizeLimitMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "csp.middleware.CSPMiddleware",
    # TOTP for every account but demo ones: after allauth's middleware so the user is known.
    "conflictdesk.desk.middleware.RequireTOTPMiddleware",
]

ROOT_URLCONF = "conflictdesk.urls"
WSGI_APPLICATION = "conflictdesk.wsgi.application"

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

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "static_root"
# WhiteNoise serves the collected, fingerprinted files in production (no CDN,
# no extra web server needed); in development runserver serves them.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# --- database ----------------------------------------------------------------
_DATABASE_URL = env_str(
    "DATABASE_URL", "postgres://conflictdesk:conflictdesk@127.0.0.1:5432/conflictdesk" if DEBUG else None
)
if not _DATABASE_URL:
    raise ImproperlyConfigured("DATABASE_URL is required when DJANGO_DEBUG=0")
# A connection is kept for DATABASE_CONN_MAX_AGE seconds and checked (SELECT 1) before its first use in each
# request or task, so one that broke (PostgreSQL restarted) is replaced instead of failing the work.
DATABASES = {"default": dj_database_url.parse(_DATABASE_URL, conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
                                              conn_health_checks=True)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# The role production's web, worker and beat connect as (DATABASE_URL names it there; `migrate`
# runs as the owner). After each migrate it is granted INSERT and SELECT only on the audit tables
# (audit/db_roles.py), so the application can never rewrite its own trail.
CONFLICTDESK_DB_APP_ROLE = env_str("CONFLICTDESK_DB_APP_ROLE", "conflictdesk_app")

# --- cache: shared by every web process, because login and API rate limits are counted here.
# A per-process cache would give each gunicorn worker its own five guesses. "locmem://" is for
# test runs without Redis (make test-unit, test-db, and tests/dev_env.py's default) only.
_CACHE_URL = env_str("CONFLICTDESK_CACHE_URL", "redis://127.0.0.1:6379/1")
if _CACHE_URL.startswith("locmem://"):
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": _CACHE_URL,
                          "KEY_PREFIX": "conflictdesk"}}
# How many reverse proxies (the TLS proxy: 1) append to X-Forwarded-For before us. The client is
# the address the outermost trusted proxy saw; 0 (no proxy) ignores the header, which anyone can forge.
CONFLICTDESK_TRUSTED_PROXY_COUNT = env_int("CONFLICTDESK_TRUSTED_PROXY_COUNT", 0)

# --- authentication: django-allauth, e-mail login, no self sign-up, throttled logins, MFA
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "/"
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = "none"
ACCOUNT_RATE_LIMITS = {"login_failed": "5/5m/ip,5/5m/key"}
# Rate limits count per client, not per proxy (see the cache section).
ALLAUTH_TRUSTED_PROXY_COUNT = CONFLICTDESK_TRUSTED_PROXY_COUNT
ACCOUNT_ADAPTER = "conflictdesk.desk.adapters.InviteOnlyAccountAdapter"
# "Remember me" would stretch a session past the idle window; the window is the policy.
ACCOUNT_SESSION_REMEMBER = False
ACCOUNT_LOGOUT_REDIRECT_URL = "account_login"
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = "ConflictDesk"

# --- security: secure by default, relaxed only for local development over http
SESSION_COOKIE_AGE = env_int("CONFLICTDESK_SESSION_IDLE_SECONDS", 30 * 60)
SESSION_SAVE_EVERY_REQUEST = True  # idle expiry: every request renews the window
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # htmx reads the token from the page, not the cookie
SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_CONTENT_TYPE_NOSNIFF = True
# No request here carries more than a decision, a site or a trigger: 1 MiB is generous, and it
# bounds what one request can make a worker parse (BodySizeLimitMiddleware applies it to the API too).
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("CONFLICTDESK_MAX_REQUEST_BYTES", 1024 * 1024)
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy (django-csp): only this origin's files run or style a page, so markup that
# slipped into a rendered field (a composition's text, a server's diagnostics) cannot execute.
# htmx is told not to inject its inline style or eval anything (templates/base.html). The API docs
# pages loosen it for themselves only (conflictdesk/api/urls.py).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}
if not DEBUG:
    SECURE_SSL_REDIRECT = env_bool("DJANGO_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31536000)
    # Subdomains too: a plain-http subdomain could otherwise set cookies for this host. Preload only
    # marks the header; the domain joins browsers' lists when its owner submits it.
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    # Liveness comes over plain http from the container runtime (no data, no login).
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    # /metrics carries a bearer token: https like everything else, unless the operator states that
    # Prometheus scrapes over a private network (compose's internal one does).
    if env_bool("CONFLICTDESK_METRICS_PLAIN_HTTP", False):
        SECURE_REDIRECT_EXEMPT.append(r"^metrics$")

# --- e-mail: staff who receive dead letters and conflicts ----------------------
EMAIL_BACKEND = env_str("DJANGO_EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env_str("DJANGO_DEFAULT_FROM_EMAIL", "conflictdesk@localhost")
CONFLICTDESK_STAFF_EMAILS = env_list("CONFLICTDESK_STAFF_EMAILS")

# --- REST API and its OpenAPI schema -------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "knox.auth.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # Per client, counted in the shared cache: a stolen token or a script cannot hammer the
    # engine's servers through the triggers, nor the database through the listings.
    "DEFAULT_THROTTLE_CLASSES": ["rest_framework.throttling.AnonRateThrottle",
                                 "rest_framework.throttling.UserRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"anon": env_str("CONFLICTDESK_API_ANON_RATE", "30/min"),
                               "user": env_str("CONFLICTDESK_API_USER_RATE", "600/min")},
    # Throttles identify clients the same way the login limits do (see the cache section).
    "NUM_PROXIES": CONFLICTDESK_TRUSTED_PROXY_COUNT,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "ConflictDesk API",
    "DESCRIPTION": "openEHR <-> FHIR sync: sites, runs, conflicts, dead letters, audit, triggers, health. "
                   "Token (`Authorization: Token <key>`, from `manage.py api_token <email>`) or session auth; "
                   "the desk's roles apply.",
    "VERSION": "1",
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema is for signed-in users only, like everything else under /api/v1/.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SERVE_AUTHENTICATION": ["knox.auth.TokenAuthentication",
                             "rest_framework.authentication.SessionAuthentication"],
    # Swagger UI and Redoc from the vendored sidecar package: no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Three models have a "status" field with different choices: name each enum after its model.
    "ENUM_NAME_OVERRIDES": {
        "SyncRunStatusEnum": "sync.models.SyncRun.Status",
        "ConflictStatusEnum": "sync.models.Conflict.Status",
        "DeadLetterStatusEnum": "sync.models.DeadLetter.Status",
    },
}

# An API token stops working this many days after it was issued (its row holds the expiry);
# `manage.py api_token` issues a new one. A leaked token is then useful for a bounded time only,
# and a leaked database row not at all: only the token's digest is stored.
CONFLICTDESK_API_TOKEN_DAYS = env_int("CONFLICTDESK_API_TOKEN_DAYS", 90)

# --- Celery: no lost work. PostgreSQL holds every unit of work; the broker
# only carries hints, and these settings keep even the hints safe.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
CELERY_RESULT_BACKEND = None  # results live in PostgreSQL (SyncRun), not the broker
CELERY_TASK_ACKS_LATE = True  # ack after the task ran: a crash re-delivers it
CELERY_TASK_REJECT_ON_WORKER_LOST = True  # SIGKILLed worker -> message re-queued
CELERY_WORKER_PREFETCH_MULTIPLIER = 1  # long tasks: never hoard messages
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# Longest retry delay is 32 s and a run lease is minutes; the visibility
# timeout must exceed both or Redis re-delivers a task that is still running.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600),
}
CELERY_TASK_TRACK_STARTED = True
# Celery's Django fixup closes every database connection before and after each task unless this is
# set: every task then paid a new PostgreSQL connection (SCRAM authentication, a forked backend), a
# quarter of the workers' sampled time under load. Set, the fixup closes them only every this many
# tasks; between, conflictdesk/celery.py treats a task as Django treats a request (close_old_connections).
CELERY_DB_REUSE_MAX = env_int("CELERY_DB_REUSE_MAX", 1000)
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Two queues. Runs go to the default one; detection (site and central polls, the deletion pass) and
# beat's light ticks go to their own, so a slow or unreachable source never queues in front of the runs.
# A worker started without -Q consumes both; docs/scale-out.md runs a small node for the poll queue.
CONFLICTDESK_RUN_QUEUE = "celery"
CONFLICTDESK_POLL_QUEUE = env_str("CONFLICTDESK_POLL_QUEUE", "sync.poll")
CELERY_TASK_DEFAULT_QUEUE = CONFLICTDESK_RUN_QUEUE
CELERY_TASK_QUEUES = {CONFLICTDESK_RUN_QUEUE: {}, CONFLICTDESK_POLL_QUEUE: {}}
CELERY_TASK_ROUTES = {
    name: {"queue": CONFLICTDESK_POLL_QUEUE}
    for name in ("sync.poll_site", "sync.poll_central", "sync.poll_due", "sync.check_deletions", "sync.sweep",
                 "sync.probe_destinations")
}
# Poison work: no task runs forever or grows without bound. The soft limit raises inside the task
# (a run records it as a failed attempt and retries on the schedule; a poll backs off); the hard
# limit kills the pool process, and its run is re-claimed after its lease (a crash, counted below).
# Both are per task; a run's lease (CONFLICTDESK_RUN_LEASE_SECONDS) is per step.
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 240)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 300)
# A pool process that grew past this (KiB) is replaced after its current task.
CELERY_WORKER_MAX_MEMORY_PER_CHILD = env_int("CELERY_WORKER_MAX_MEMORY_PER_CHILD", 512 * 1024)
# A run claimed this many times without any step finishing (its worker died or hung in the same
# step each time) dead-letters as crash_loop instead of being re-claimed forever.
CONFLICTDESK_CRASH_LOOP_CLAIMS = env_int("CONFLICTDESK_CRASH_LOOP_CLAIMS", 3)

# How often the staff digest of new dead letters and conflicts goes out (minutes; beat, desk.send_digest).
CONFLICTDESK_DIGEST_MINUTES = env_int("CONFLICTDESK_DIGEST_MINUTES", 60)

# --- the schedule (Celery beat). Beat only ticks; each site's own
# poll_interval_seconds is honoured by poll_due, so changing an interval needs
# no beat restart.
# The sweeper re-sends a hint for work with no live lease.
CONFLICTDESK_SWEEP_SECONDS = env_float("CONFLICTDESK_SWEEP_SECONDS", 2)
# A rewrite of the local audit table becomes detectable from outside once anchored.
CONFLICTDESK_ANCHOR_SECONDS = env_float("CONFLICTDESK_ANCHOR_SECONDS", 300)
# Names this installation's anchors on the central server (AuditEvent.source.site), so verification
# lists them from the server, not from local rows an owner could delete. Unset: the database's name.
CONFLICTDESK_AUDIT_INSTALLATION = env_str("CONFLICTDESK_AUDIT_INSTALLATION")
# Every chain rehashed and every anchor re-read from the central server: a rewrite is only
# found if someone looks, so beat looks; the result is on /metrics and the health page.
CONFLICTDESK_AUDIT_VERIFY_SECONDS = env_float("CONFLICTDESK_AUDIT_VERIFY_SECONDS", 3600)
CONFLICTDESK_CENTRAL_POLL_SECONDS = env_int("CONFLICTDESK_CENTRAL_POLL_SECONDS", 30)
# With `manage.py sync_poll_loop` running, beat leaves detection to it: polls
# through beat wait in the run queue, the loop does not (see sync.detection.poll_loop).
CONFLICTDESK_POLL_LOOP = env_bool("CONFLICTDESK_POLL_LOOP", False)
# Deletions are found on their own slow schedule, paged, never by the hot poll (sync.detection).
CONFLICTDESK_DELETION_CHECK_SECONDS = env_float("CONFLICTDESK_DELETION_CHECK_SECONDS", 300)
# Demographics that moved at a site without a new composition (sync.patients.refresh), one pass at a time.
CONFLICTDESK_DEMOGRAPHICS_SECONDS = env_float("CONFLICTDESK_DEMOGRAPHICS_SECONDS", 3600)
# Registrations MDM linked to a golden record since the last sweep get its existing records (sync.patients.backfill).
CONFLICTDESK_BACKFILL_SECONDS = env_float("CONFLICTDESK_BACKFILL_SECONDS", 30)
CELERY_BEAT_SCHEDULE = {
    "sync-sweep": {"task": "sync.sweep", "schedule": CONFLICTDESK_SWEEP_SECONDS},
    # A destination that is down (breaker open) is probed when due (sync.workflow.breaker); a tick finds none.
    "sync-probe-destinations": {"task": "sync.probe_destinations", "schedule": 1.0},
    "audit-anchor-heads": {"task": "audit.anchor_heads", "schedule": CONFLICTDESK_ANCHOR_SECONDS},
    "audit-verify": {"task": "audit.verify", "schedule": CONFLICTDESK_AUDIT_VERIFY_SECONDS},
    "sync-check-deletions": {"task": "sync.check_deletions", "schedule": CONFLICTDESK_DELETION_CHECK_SECONDS},
    "sync-refresh-demographics": {"task": "sync.refresh_demographics", "schedule": CONFLICTDESK_DEMOGRAPHICS_SECONDS},
    "sync-backfill-links": {"task": "sync.backfill_links", "schedule": CONFLICTDESK_BACKFILL_SECONDS},
    # Staff hear of dead letters and conflicts here only: one digest per interval, never a mail per letter.
    "desk-send-digest": {"task": "desk.send_digest", "schedule": 60.0 * CONFLICTDESK_DIGEST_MINUTES},
}
if not CONFLICTDESK_POLL_LOOP:
    CELERY_BEAT_SCHEDULE |= {
        "sync-poll-due-sites": {"task": "sync.poll_due", "schedule": 1.0},
        "sync-poll-central": {"task": "sync.poll_central", "schedule": float(CONFLICTDESK_CENTRAL_POLL_SECONDS)},
    }

# --- the sync engine ------------------------------------------------------------
CONFLICTDESK_FHIR_BASE_URL = env_str("CONFLICTDESK_FHIR_BASE_URL", "http://127.0.0.1:8090/fhir")
# "user:password" the engine sends the central server as Basic auth (writes, polls, anchors); a
# secret, so from the environment only. Unset: none (then keep HAPI on a private network).
CONFLICTDESK_FHIR_CREDENTIALS = env_str("CONFLICTDESK_FHIR_CREDENTIALS")
if CONFLICTDESK_FHIR_CREDENTIALS and ":" not in CONFLICTDESK_FHIR_CREDENTIALS:
    raise ImproperlyConfigured("CONFLICTDESK_FHIR_CREDENTIALS must be 'user:password'")
CONFLICTDESK_HTTP_TIMEOUT_SECONDS = env_int("CONFLICTDESK_HTTP_TIMEOUT_SECONDS", 10)
# Transient faults retry after exactly these delays (no jitter), then dead-letter.
CONFLICTDESK_RETRY_DELAYS = (1, 2, 4, 8, 16, 32)
# A destination that does not answer opens its circuit breaker: runs that need it wait instead of
# retrying, and a probe (this timeout) re-checks it after the delays above, then every this many seconds.
CONFLICTDESK_PROBE_TIMEOUT_SECONDS = env_float("CONFLICTDESK_PROBE_TIMEOUT_SECONDS", 3)
CONFLICTDESK_PROBE_EVERY_SECONDS = env_float("CONFLICTDESK_PROBE_EVERY_SECONDS", 60)
# A server's Retry-After is honoured up to this many seconds: it comes from outside, and a
# countdown past the broker's visibility timeout (or an overflowing one) would park a run.
CONFLICTDESK_RETRY_AFTER_MAX_SECONDS = env_int("CONFLICTDESK_RETRY_AFTER_MAX_SECONDS", 300)
# A run's lease: a worker that vanished mid-step is replaced once it lapses (and the sweeper runs).
# Its process renews it every CONFLICTDESK_LEASE_HEARTBEAT_SECONDS while it works on the run
# (sync.workflow.heartbeat), so a dead worker's run is taken over within lease + sweep seconds.
CONFLICTDESK_RUN_LEASE_SECONDS = env_int("CONFLICTDESK_RUN_LEASE_SECONDS", 6)
CONFLICTDESK_LEASE_HEARTBEAT_SECONDS = env_float("CONFLICTDESK_LEASE_HEARTBEAT_SECONDS", 2)
if CONFLICTDESK_LEASE_HEARTBEAT_SECONDS * 2 > CONFLICTDESK_RUN_LEASE_SECONDS:
    raise ImproperlyConfigured("CONFLICTDESK_RUN_LEASE_SECONDS must be at least twice the lease heartbeat")
# The audit step hashes the resources as the write's answer says they were stored; this share
# of writes (0..1, decided by the source version's hash) is also read back with an independent
# vread, so a server that answers one thing and stores another is caught.
CONFLICTDESK_READBACK_VREAD_RATE = env_float("CONFLICTDESK_READBACK_VREAD_RATE", 0.05)
if not 0 <= CONFLICTDESK_READBACK_VREAD_RATE <= 1:
    raise ImproperlyConfigured("CONFLICTDESK_READBACK_VREAD_RATE must be between 0 and 1")
# The sweeper re-sends a hint for work with no live lease after this long.
CONFLICTDESK_REDISPATCH_AFTER_SECONDS = env_int("CONFLICTDESK_REDISPATCH_AFTER_SECONDS", 30)
# Re-read this much before each cursor to absorb clock skew; rows are de-duplicated.
CONFLICTDESK_POLL_OVERLAP_SECONDS = env_int("CONFLICTDESK_POLL_OVERLAP_SECONDS", 5)
# Detection reads and commits this many changes at a time (a first poll, a catch-up after an
# outage): memory stays bounded and each page's cursor move commits with its events.
CONFLICTDESK_DETECTION_PAGE_SIZE = env_int("CONFLICTDESK_DETECTION_PAGE_SIZE", 500)
# Single flight: a poll queued this long ago and not finished (its message lost with a broker
# restart, its worker killed) is sent again; until then no second poll of that source is queued.
# Short is safe: a second poll while one still runs finds the site's advisory lock taken and does nothing.
CONFLICTDESK_POLL_STALE_SECONDS = env_int("CONFLICTDESK_POLL_STALE_SECONDS", 15)
# Where watching the central server starts the first time (ISO 8601, e.g. 2026-01-01T00:00:00Z).
# Unset: from the moment the engine first polls it; central changes made before that do not
# flow back (set a date to backfill them). Sites always start from their beginning.
CONFLICTDESK_CENTRAL_SINCE = env_str("CONFLICTDESK_CENTRAL_SINCE", "")
# Resource types whose central changes flow back to the sites.  A Specimen flows back only as part of
# a record already synced (a lab result's specimen); one born centrally alone goes to no site.
CONFLICTDESK_FLOWBACK_TYPES = env_list("CONFLICTDESK_FLOWBACK_TYPES") or [
    "Observation", "Condition", "Procedure", "MedicationRequest", "CarePlan", "DiagnosticReport", "Specimen",
    "AllergyIntolerance",  # a central allergy reaches every site of its patient (issue 17)
]
# Where site URLs may point: scheme://host[:port] entries ("*.example.org" for its subdomains, ":*"
# for any port). A site row is data an admin-role token can change; without this list it could send
# the site's credentials to any host. Development allows loopback and the reserved .test domain;
# production allows nothing until the operator lists its CDRs. (Credentials: see sync/site_policy.py.)
CONFLICTDESK_SITE_URL_ALLOWLIST = env_list(
    "CONFLICTDESK_SITE_URL_ALLOWLIST", "http://127.0.0.1:*,http://localhost:*,http://*.test:*" if DEBUG else "")
# Ask HAPI's $validate too (slower; the fhir.resources check always runs).
CONFLICTDESK_HAPI_VALIDATE = env_bool("CONFLICTDESK_HAPI_VALIDATE", False)

# --- the reviewer desk ------------------------------------------------------------
# Where links in e-mails (invitations, digests) point.
CONFLICTDESK_BASE_URL = env_str("CONFLICTDESK_BASE_URL", "http://127.0.0.1:8000")
# The staff digest's interval (CONFLICTDESK_DIGEST_MINUTES) is set with the beat schedule above.

# --- Prometheus metrics ---------------------------------------------------------
# Bearer token Prometheus sends to /metrics; unset means open only when DEBUG.
CONFLICTDESK_METRICS_TOKEN = env_str("CONFLICTDESK_METRICS_TOKEN")
# Redis queues whose length is conflictdesk_celery_queue_depth.
CONFLICTDESK_METRICS_QUEUES = env_list("CONFLICTDESK_METRICS_QUEUES") or [CONFLICTDESK_RUN_QUEUE, CONFLICTDESK_POLL_QUEUE]
# /metrics recomputes its figures from PostgreSQL at most this often per process.
CONFLICTDESK_METRICS_CACHE_SECONDS = env_int("CONFLICTDESK_METRICS_CACHE_SECONDS", 10)

# --- logging: ids only, never patient data ------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("CONFLICTDESK_LOG_LEVEL", "INFO")},
    # httpx/httpcore log whole URLs at INFO/DEBUG, and search URLs can carry
    # identifier values: our clients log ids themselves, so keep these quiet.
    "loggers": {
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}

# --- demo (deploy/demo.sh sets these; production never runs the demo commands) ---------
# The demo's TOTP-free accounts and its commands work only when this AND DEBUG are on
# (conflictdesk.desk.roles.demo_enabled), so a stray flag in production changes nothing.
CONFLICTDESK_DEMO_MODE = env_bool("CONFLICTDESK_DEMO_MODE", False)
CONFLICTDESK_DEMO_PASSWORD = env_str("CONFLICTDESK_DEMO_PASSWORD")
# {i} is the site number, {port} is 8100+i; unset: the local sites deploy/ehrbase.sh starts.
CONFLICTDESK_DEMO_SITE_URL = env_str("CONFLICTDESK_DEMO_SITE_URL")
