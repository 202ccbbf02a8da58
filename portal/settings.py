"""TwoKey settings. Everything comes from the environment; the defaults suit a
local run (SQLite under ./var, Redis on localhost)."""

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from portal.keys import credentials_public_key, load_key, local_public_key, require_strong, weakness

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    return os.environ.get(name, str(default)).strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG")
DATA_DIR = Path(os.environ.get("TWOKEY_DATA_DIR", BASE_DIR / "var"))
# Local runs (the README's run and test commands) may generate keys into DATA_DIR.
_GENERATE_KEYS = env_bool("TWOKEY_LOCAL_KEYS")

# Which process this is: web, worker (hypervisor work), notify (the portal's
# own background work: notifications, chat, reminders, checkpoints) or beat;
# unset for the shell, management commands and tests, which hold every key.
SERVICE = os.environ.get("TWOKEY_SERVICE", "").strip().lower()
if SERVICE not in ("", "web", "worker", "notify", "beat"):
    raise ImproperlyConfigured(f"TWOKEY_SERVICE must be web, worker, notify or beat (or unset), not {SERVICE!r}")

SECRET_KEY = load_key("SECRET_KEY", data_dir=DATA_DIR, generate_locally=_GENERATE_KEYS)
AUDIT_HMAC_KEY = load_key("AUDIT_HMAC_KEY", data_dir=DATA_DIR, generate_locally=_GENERATE_KEYS)
# CREDENTIALS_KEY opens connector passwords: only the worker (and the shell)
# hold it. The web, notify and beat never load it, not even from the local key file,
# and refuse to start when it is in their environment; they seal new
# passwords with the public key.
HOLDS_CREDENTIALS_KEY = SERVICE in ("", "worker")
if HOLDS_CREDENTIALS_KEY:
    CREDENTIALS_KEY = load_key("CREDENTIALS_KEY", data_dir=DATA_DIR, generate_locally=_GENERATE_KEYS)
elif "CREDENTIALS_KEY" in os.environ:
    raise ImproperlyConfigured(
        f"CREDENTIALS_KEY must not be in the environment of the {SERVICE} process: only the worker holds it. "
        "Give this process CREDENTIALS_PUBLIC_KEY instead (python manage.py credentials_public_key prints it)."
    )
else:
    CREDENTIALS_KEY = ""
CREDENTIALS_PUBLIC_KEY = os.environ.get("CREDENTIALS_PUBLIC_KEY", "").strip()
if CREDENTIALS_KEY and not weakness("CREDENTIALS_KEY", CREDENTIALS_KEY):
    _derived = credentials_public_key(CREDENTIALS_KEY)
    if CREDENTIALS_PUBLIC_KEY and CREDENTIALS_PUBLIC_KEY != _derived:
        raise ImproperlyConfigured("CREDENTIALS_PUBLIC_KEY does not belong to CREDENTIALS_KEY; unset it or fix it.")
    CREDENTIALS_PUBLIC_KEY = _derived
if not DEBUG:
    for _name in ("SECRET_KEY", "AUDIT_HMAC_KEY", *(["CREDENTIALS_KEY"] if HOLDS_CREDENTIALS_KEY else [])):
        require_strong(_name, globals()[_name])
    if SERVICE == "web":
        require_strong("CREDENTIALS_PUBLIC_KEY", CREDENTIALS_PUBLIC_KEY)

# Signed checkpoints of the audit chain and their witness (audit/signing.py,
# audit/checkpoints.py, audit/witness.py). AUDIT_SIGNING_KEY (Ed25519) signs
# checkpoints: notify, which runs the signing task, the worker (which ran it
# before notify existed; see PORTAL_QUEUE) and the shell hold it; the web and
# beat refuse it. Others may be given the public key.
HOLDS_AUDIT_SIGNING_KEY = SERVICE in ("", "worker", "notify")
if HOLDS_AUDIT_SIGNING_KEY:
    # The shell and the tests generate the local key file only when they sign
    # (audit.checkpoints.signing_key); a local worker makes it at start.
    AUDIT_SIGNING_KEY = load_key(
        "AUDIT_SIGNING_KEY", data_dir=DATA_DIR, generate_locally=_GENERATE_KEYS and SERVICE in ("worker", "notify")
    )
elif "AUDIT_SIGNING_KEY" in os.environ:
    raise ImproperlyConfigured(
        f"AUDIT_SIGNING_KEY must not be in the environment of the {SERVICE} process: only notify signs "
        "checkpoints. Give this process AUDIT_SIGNING_PUBLIC_KEY (python manage.py audit_public_key) if anything."
    )
else:
    AUDIT_SIGNING_KEY = ""
AUDIT_SIGNING_KEY_LOCAL = _GENERATE_KEYS
if not DEBUG and (SERVICE in ("worker", "notify") or AUDIT_SIGNING_KEY):
    require_strong("AUDIT_SIGNING_KEY", AUDIT_SIGNING_KEY)
AUDIT_SIGNING_PUBLIC_KEY = os.environ.get("AUDIT_SIGNING_PUBLIC_KEY", "").strip()
AUDIT_CHECKPOINT_SECONDS = env_int("AUDIT_CHECKPOINT_SECONDS", 60)
# A ticket's final state asks for a checkpoint this long after it; the final
# states of other tickets in that time are signed by the same checkpoint.
AUDIT_CHECKPOINT_SOON_SECONDS = float(os.environ.get("AUDIT_CHECKPOINT_SOON_SECONDS", 1))
# Where verification reads the newest witnessed checkpoint (the witness's own
# HTTP interface, not this database) and the key its cosignatures must carry.
WITNESS_URL = os.environ.get("WITNESS_URL", "").strip()
WITNESS_PUBLIC_KEY = os.environ.get("WITNESS_PUBLIC_KEY", "").strip()
if WITNESS_URL and not DEBUG:
    require_strong("WITNESS_PUBLIC_KEY", WITNESS_PUBLIC_KEY)

# Administrator passwords of new VMs (approvals/guest_passwords.py): the
# worker makes one for every clone and seals it to GUEST_PASSWORD_PUBLIC_KEY;
# only the web, which reveals it once to the requester, and the shell hold
# GUEST_PASSWORD_KEY. The worker and beat refuse it.
HOLDS_GUEST_PASSWORD_KEY = SERVICE in ("", "web")
if HOLDS_GUEST_PASSWORD_KEY:
    GUEST_PASSWORD_KEY = load_key("GUEST_PASSWORD_KEY", data_dir=DATA_DIR, generate_locally=_GENERATE_KEYS)
elif "GUEST_PASSWORD_KEY" in os.environ:
    raise ImproperlyConfigured(
        f"GUEST_PASSWORD_KEY must not be in the environment of the {SERVICE} process: only the web reveals "
        "new VMs' passwords. Give the worker GUEST_PASSWORD_PUBLIC_KEY (python manage.py guest_password_public_key)."
    )
else:
    GUEST_PASSWORD_KEY = ""
GUEST_PASSWORD_PUBLIC_KEY = os.environ.get("GUEST_PASSWORD_PUBLIC_KEY", "").strip()
if GUEST_PASSWORD_KEY and not weakness("GUEST_PASSWORD_KEY", GUEST_PASSWORD_KEY):
    _derived = credentials_public_key(GUEST_PASSWORD_KEY)
    if GUEST_PASSWORD_PUBLIC_KEY and GUEST_PASSWORD_PUBLIC_KEY != _derived:
        raise ImproperlyConfigured(
            "GUEST_PASSWORD_PUBLIC_KEY does not belong to GUEST_PASSWORD_KEY; unset it or fix it."
        )
    GUEST_PASSWORD_PUBLIC_KEY = _derived
    if _GENERATE_KEYS:
        local_public_key("GUEST_PASSWORD_KEY", data_dir=DATA_DIR)  # left for a local worker to read
elif not GUEST_PASSWORD_PUBLIC_KEY and _GENERATE_KEYS and SERVICE == "worker":
    GUEST_PASSWORD_PUBLIC_KEY = local_public_key("GUEST_PASSWORD_KEY", data_dir=DATA_DIR)
if not DEBUG and GUEST_PASSWORD_KEY:
    require_strong("GUEST_PASSWORD_KEY", GUEST_PASSWORD_KEY)

# Seals on decisions (approvals/seals.py): an HMAC over each submission,
# approval and rejection, with a key the database does not hold. The web
# seals, the worker verifies. SEAL_OLD_KEYS (comma-separated, or the local
# file DATA_DIR/seal_old_keys.key, one a line) keep earlier keys for
# verification after `manage.py rotate_seal_key`.
# Notify and beat neither seal nor verify.
SEAL_KEY = load_key(
    "SEAL_KEY", data_dir=DATA_DIR, generate_locally=_GENERATE_KEYS and SERVICE not in ("beat", "notify")
)
SEAL_OLD_KEYS = env_list("SEAL_OLD_KEYS") or (
    (DATA_DIR / "seal_old_keys.key").read_text().split()
    if _GENERATE_KEYS and (DATA_DIR / "seal_old_keys.key").exists()
    else []
)
if not DEBUG and SERVICE not in ("beat", "notify"):
    require_strong("SEAL_KEY", SEAL_KEY)

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.forms",  # its widget templates, for FORM_RENDERER below
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "axes",
    "csp",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "audit",
    "accounts",
    "connectors",
    "approvals",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "accounts.middleware.PasswordChangeRequiredMiddleware",
    # Last, as django-axes asks.
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    # Local passwords; with a directory configured, break-glass accounts only.
    "accounts.directory.local.LocalBackend",
    # Each does nothing unless its directory is configured (below).
    "accounts.directory.ldap_backend.DirectoryLDAPBackend",
    "accounts.directory.oidc.DirectoryOIDCBackend",
]
# Sign-in throttling: a few failures per user and address, then a cool-off.
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("AXES_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_VERBOSE = False

# A one-time password confirmed in a session counts for approvals this long.
OTP_RECENT_SECONDS = env_int("OTP_RECENT_SECONDS", 15 * 60)
OTP_TOTP_ISSUER = "TwoKey"

# Sessions end after inactivity (every request renews them). The table
# holds a keyed digest of each key, never the cookie's (accounts/sessions.py).
SESSION_ENGINE = "accounts.sessions"
SESSION_COOKIE_AGE = env_int("SESSION_IDLE_MINUTES", 30) * 60
SESSION_SAVE_EVERY_REQUEST = True
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"

# Behind TLS (the default with DEBUG off): secure cookies, HSTS, redirect to
# https, trusting X-Forwarded-Proto from the proxy in front. Set
# TWOKEY_HTTPS=0 only where the portal is reached over plain http on purpose
# (local runs, the test suite).
HTTPS = env_bool("TWOKEY_HTTPS", not DEBUG)
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = HTTPS
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = 31536000 if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# No inline scripts anywhere: scripts come from the portal's own static files.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    }
}

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"

# Form widgets render through TEMPLATES, so the project's own widget templates
# (templates/approvals/widgets/) are found.
FORM_RENDERER = "django.forms.renderers.TemplatesSetting"

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

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{DATA_DIR / 'twokey.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
        # A kept connection is checked before its first use in a request or
        # task, so one the server dropped meanwhile is replaced, not failed on.
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE: a transaction takes the write lock at BEGIN, so read-then-write
    # sequences (the audit chain head, ticket claims) serialise instead of failing.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Which of the portal's processes holds a connection, as the database's
    # own activity view shows it (pg_stat_activity.application_name).
    DATABASES["default"].setdefault("OPTIONS", {})["application_name"] = f"twokey-{SERVICE or 'portal'}"

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": os.environ.get("CACHE_URL", REDIS_URL),
        "KEY_PREFIX": os.environ.get("CACHE_KEY_PREFIX", "twokey"),
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
# The portal speaks English only: with translation off, every page is spared
# the lookups of the active language (in URL reversing, templates and forms).
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
# bench/pages_bench.py compares pages with a trivial signed-in view that only exists when this is on.
BENCH_TRIVIAL_VIEW = env_bool("BENCH_TRIVIAL_VIEW")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first: an unauthenticated call then gets 401 with a
        # WWW-Authenticate header rather than 403.
        "accounts.authentication.HashedTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "approvals.api.errors.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "TwoKey API",
    "DESCRIPTION": "Change tickets for virtual infrastructure behind separation-of-duties approvals.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "TicketKindEnum": "approvals.choices.TicketKind",
        "TicketStateEnum": "approvals.choices.TicketState",
        "FindingKindEnum": "audit.models.FindingKind",
        "FindingStateEnum": [("open", "open"), ("acknowledged", "acknowledged")],
    },
}

EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS")
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "twokey@localhost")
# Password reset by e-mail exists only with a backend that delivers (not
# console, locmem, dummy or filebased). Requests per hour, per address and
# per client address; beyond, nothing is sent and the answer stays the same.
PASSWORD_RESET_LIMIT_PER_HOUR = env_int("PASSWORD_RESET_LIMIT_PER_HOUR", 3)
PASSWORD_RESET_IP_LIMIT_PER_HOUR = env_int("PASSWORD_RESET_IP_LIMIT_PER_HOUR", 10)
PORTAL_URL = os.environ.get("PORTAL_URL", "http://127.0.0.1:8000")
# For EMAIL_BACKEND=django.core.mail.backends.filebased.EmailBackend only.
EMAIL_FILE_PATH = os.environ.get("EMAIL_FILE_PATH", "")

# Chat webhooks (Slack, Mattermost, Teams): https only unless allowed here
# (a receiver on a private network); delivery tries CHAT_MAX_ATTEMPTS times,
# waiting CHAT_RETRY_BASE_SECONDS, then twice as long each time.
CHAT_WEBHOOK_ALLOW_HTTP = env_bool("CHAT_WEBHOOK_ALLOW_HTTP")
CHAT_MAX_ATTEMPTS = env_int("CHAT_MAX_ATTEMPTS", 6)
CHAT_RETRY_BASE_SECONDS = float(os.environ.get("CHAT_RETRY_BASE_SECONDS", 30))
CHAT_TIMEOUT_SECONDS = float(os.environ.get("CHAT_TIMEOUT_SECONDS", 10))
# An approved ticket whose object another running ticket holds looks again after this long.
CONFLICT_RETRY_SECONDS = float(os.environ.get("CONFLICT_RETRY_SECONDS", 15))

# Celery. These choices make a delivery survive a worker that dies mid-task:
# - acks_late + reject_on_worker_lost: a message is acknowledged only after the
#   task returns, and a worker killed mid-task hands it back to the broker;
# - prefetch 1: a busy worker does not sit on messages another could run;
# - the visibility timeout is above the longest hypervisor operation, so Redis
#   does not hand a message that is still being worked on to a second worker.
# Redelivery alone is never trusted for correctness: the ticket's
# compare-and-set claim and lease decide who acts, and the sweeper re-queues
# whatever the broker lost (Redis keeps nothing on disk here).
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600)}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER")
CELERY_TIMEZONE = TIME_ZONE
# Celery's Django fixup closes every database connection before and after
# each task unless told to reuse them: each ticket, notification and
# checkpoint then paid for a new PostgreSQL connection (a backend started,
# its catalogue caches cold), the largest part of a ticket's time. Reuse is
# unbounded here; portal/celery.py keeps connections as Django keeps them
# across requests instead (closed at a task's edges only when broken or older
# than CONN_MAX_AGE, and checked before reuse).
CELERY_DB_REUSE_MAX = 2**31
# Two queues. EXECUTION_QUEUE (Celery's default name, so anything unrouted
# lands there) is for work that logs in to a hypervisor, consumed by the
# worker, which holds CREDENTIALS_KEY. PORTAL_QUEUE is for the portal's own
# work a ticket causes, which must not take a turn from executions on the
# worker's processes; it is consumed by notify, which holds no hypervisor
# credentials:
# - send_notification, deliver_chat: mail and chat webhooks, ticket reads;
# - remind_unreviewed_emergencies: reminders from the database;
# - sign_checkpoint: reads the audit chain, signs with AUDIT_SIGNING_KEY;
# - sync_directory: LDAP / OpenID Connect, no hypervisor.
# Left on the execution queue: execute_ticket, revoke_access, read_inventory
# (they log in), sweep (it takes back expired leases by asking the
# hypervisor what happened) and detect_drift (it reads every hypervisor).
EXECUTION_QUEUE = "celery"
PORTAL_QUEUE = "portal"
CELERY_TASK_DEFAULT_QUEUE = EXECUTION_QUEUE
CELERY_TASK_ROUTES = {
    name: {"queue": PORTAL_QUEUE}
    for name in (
        "approvals.tasks.send_notification",
        "approvals.tasks.deliver_chat",
        "approvals.tasks.remind_unreviewed_emergencies",
        "audit.tasks.sign_checkpoint",
        "accounts.tasks.sync_directory",
    )
}
SWEEP_INTERVAL_SECONDS = env_int("SWEEP_INTERVAL_SECONDS", 30)
# The full reconciliation is the safety net behind the sync: less often.
DRIFT_INTERVAL_SECONDS = env_int("DRIFT_INTERVAL_SECONDS", 1800)
# Break-glass: an emergency must be reviewed within EMERGENCY_REVIEW_SECONDS
# (else a finding, a dashboard banner and a reminder every
# EMERGENCY_REMINDER_SECONDS); emergency admin_access lasts at most
# EMERGENCY_ACCESS_MAX_MINUTES. Pending tickets remind their approvers once,
# TTL_REMINDER_MINUTES before their TTL runs out.
EMERGENCY_REVIEW_SECONDS = env_int("EMERGENCY_REVIEW_SECONDS", 24 * 3600)
EMERGENCY_REMINDER_SECONDS = env_int("EMERGENCY_REMINDER_SECONDS", 24 * 3600)
EMERGENCY_ACCESS_MAX_MINUTES = env_int("EMERGENCY_ACCESS_MAX_MINUTES", 60)
TTL_REMINDER_MINUTES = env_int("TTL_REMINDER_MINUTES", 24 * 60)
CELERY_BEAT_SCHEDULE = {
    "sweep": {"task": "approvals.tasks.sweep", "schedule": SWEEP_INTERVAL_SECONDS},
    "remind-unreviewed-emergencies": {
        "task": "approvals.tasks.remind_unreviewed_emergencies",
        "schedule": EMERGENCY_REMINDER_SECONDS,
    },
    "detect-drift": {"task": "audit.tasks.detect_drift", "schedule": DRIFT_INTERVAL_SECONDS},
    "audit-checkpoint": {"task": "audit.tasks.sign_checkpoint", "schedule": AUDIT_CHECKPOINT_SECONDS},
}

# Execution. A running worker renews its lease every
# EXECUTION_LEASE_RENEW_SECONDS, also while it waits on the hypervisor; a dead
# worker's lease runs out after EXECUTION_LEASE_SECONDS and the next sweep
# takes the ticket back (within lease + SWEEP_INTERVAL_SECONDS of the crash).
EXECUTION_LEASE_SECONDS = env_int("EXECUTION_LEASE_SECONDS", 60)
# How long a vetting of a catalogue template holds when its request names no end.
CATALOGUE_VETTING_DAYS = env_int("CATALOGUE_VETTING_DAYS", 180)
EXECUTION_LEASE_RENEW_SECONDS = float(os.environ.get("EXECUTION_LEASE_RENEW_SECONDS", 10))
if not 0 < EXECUTION_LEASE_RENEW_SECONDS < EXECUTION_LEASE_SECONDS:
    raise ImproperlyConfigured("EXECUTION_LEASE_RENEW_SECONDS must be above 0 and below EXECUTION_LEASE_SECONDS")
EXECUTION_MAX_ATTEMPTS = env_int("EXECUTION_MAX_ATTEMPTS", 4)
EXECUTION_RETRY_BASE_SECONDS = float(os.environ.get("EXECUTION_RETRY_BASE_SECONDS", 5))
# How long one "minute" of admin_access lasts. Always 60, except in tests that
# watch a grant expire without waiting minutes.
ACCESS_MINUTE_SECONDS = env_int("ACCESS_MINUTE_SECONDS", 60)
# How long the worker waits for a guest to shut down (vm_power "shutdown",
# and vm_decommission before it powers the VM off hard).
GUEST_SHUTDOWN_TIMEOUT_SECONDS = float(os.environ.get("GUEST_SHUTDOWN_TIMEOUT_SECONDS", 300))
# How long a process without CREDENTIALS_KEY (the web) waits for a worker to
# read a connector's inventory into the table for it.
INVENTORY_WAIT_SECONDS = float(os.environ.get("INVENTORY_WAIT_SECONDS", 20))
# After how long without a word from the sync pages and the inventory API
# say loudly that the stored inventory is behind; how many objects one page
# of the inventory API holds.
INVENTORY_STALE_SECONDS = env_int("INVENTORY_STALE_SECONDS", 120)
INVENTORY_PAGE_SIZE = env_int("INVENTORY_PAGE_SIZE", 1000)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"pyVmomi": {"level": "WARNING"}, "urllib3": {"level": "WARNING"}, "axes": {"level": "WARNING"}},
}

# Directory sign-in: LDAP / Active Directory (LDAP_SERVER_URI, ...) and
# OpenID Connect (OIDC_ISSUER, ...); accounts/directory/config.py reads and
# checks them, and refuses to start on a setting that cannot work. With a
# directory configured, people and their roles come from it, re-synced every
# DIRECTORY_SYNC_SECONDS by beat.
from accounts.directory.config import directory_settings  # noqa: E402

globals().update(directory_settings(os.environ))
if TWOKEY_DIRECTORY:  # noqa: F821 - set just above
    CELERY_BEAT_SCHEDULE["sync-directory"] = {
        "task": "accounts.tasks.sync_directory",
        "schedule": DIRECTORY_SYNC_SECONDS,  # noqa: F821
    }

# The inventory sync (manage.py sync_inventory): how long a follow waits for
# updates before it beats its heartbeat, how often it reads every permission,
# how long a finished ticket still explains changes the sync sees, and the
# longest pause between reconnects (when pages call the inventory stale:
# INVENTORY_STALE_SECONDS above).
SYNC_HEARTBEAT_SECONDS = env_int("SYNC_HEARTBEAT_SECONDS", 2)
SYNC_PERMISSIONS_SECONDS = env_int("SYNC_PERMISSIONS_SECONDS", 5)
SYNC_EXPLAIN_SECONDS = env_int("SYNC_EXPLAIN_SECONDS", 600)
SYNC_BACKOFF_MAX_SECONDS = env_int("SYNC_BACKOFF_MAX_SECONDS", 30)
