"""Settings shared by every environment. Every address and secret comes from the environment.

`DATABASE_URL` and `REDIS_URL` must be set by the time this module is imported: the local and test settings point
them at embedded PostgreSQL and Valkey servers under `.data/` when they are unset (see `config.embedded`), so a
newcomer needs nothing but Python; the production settings refuse to start without them.
"""

import importlib.util
import os
import re
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from config.celery import DEFAULT_QUEUE, TASK_ROUTES, scheduled, task_queues

BASE_DIR = Path(__file__).resolve().parent.parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false), not {value!r}")


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if not value:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        return int(value)
    except ValueError as error:
        raise ImproperlyConfigured(f"{name} must be an integer, not {value!r}") from error


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        return float(value)
    except ValueError as error:
        raise ImproperlyConfigured(f"{name} must be a number, not {value!r}") from error


SECRET_KEY = os.environ.get("SECRET_KEY", "")
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "django_filters",
    "axes",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "accounts",
    "pipeline",
    "forecasting",
    "tools",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Before the session: a GET that a failing replica broke is answered again, from the session on, on the primary.
    "config.replicas.ReplicaReadsMiddleware",
    "config.security.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "config.rest.RateLimitHeadersMiddleware",
    "accounts.idempotency.IdempotencyMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a lockout raised during authentication into the lockout page.
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    "accounts.backends.LoginProtectionBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "builtins": ["config.templating"],  # {% url %}, its reversals kept per process
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# No inline script anywhere; no inline style in the app's own pages (see config/security.py).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
CONTENT_SECURITY_POLICY_RELAXED_STYLE = CONTENT_SECURITY_POLICY.replace(
    "style-src 'self'", "style-src 'self' 'unsafe-inline'"
)
CSP_RELAXED_STYLE_PATHS = ["/admin/", "/api/docs/"]

# --- Database and broker ---------------------------------------------------------------------------------------

if _missing := [name for name in ("DATABASE_URL", "REDIS_URL") if not os.environ.get(name)]:
    # Only a settings module that imports this one without choosing the servers first gets here.
    raise ImproperlyConfigured(
        f"{' and '.join(_missing)} must be set: config.settings.local and config.settings.test start embedded "
        "servers when they are unset, config.settings.production requires them"
    )
DATABASE_URL = os.environ["DATABASE_URL"]
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60))}
# A connection broken by a database restart is noticed and replaced at the start of the next request.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# A database that does not answer fails the request within seconds (a 503) instead of holding it.
DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = env_int("DB_CONNECT_TIMEOUT", 5)
# A pool of connections in each process (Django 5.2's psycopg pool): a request or task borrows one and gives it back,
# so a process holds at most DB_POOL_MAX_SIZE however many threads it runs. Django keeps no connection of its own
# beside a pool (it refuses CONN_MAX_AGE > 0 with one); with CONN_HEALTH_CHECKS (set above) Django has the pool check a
# connection before lending it (psycopg_pool's check_connection), so one a database restart broke is replaced.
DB_POOL = env_bool("DB_POOL", False)


if DB_POOL:
    # Looked up, not imported here: Django imports it; an install without the pool extra is refused by name.
    if importlib.util.find_spec("psycopg_pool") is None:
        raise ImproperlyConfigured("DB_POOL=1 needs the psycopg-pool package: pip install 'psycopg[pool]'")
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"]["pool"] = {
        "min_size": env_int("DB_POOL_MIN_SIZE", 2),
        "max_size": env_int("DB_POOL_MAX_SIZE", 10),
        # A request that waits this long for a free connection fails (a 503), as one that cannot connect does.
        "timeout": env_int("DB_CONNECT_TIMEOUT", 5),
    }
# Behind PgBouncer in transaction mode consecutive transactions of one connection may run on different server
# connections, so nothing may outlive a transaction on the server: no server-side cursors (outside a transaction
# Django's `.iterator()` declares one WITH HOLD and fetches from it in later statements, which PgBouncer may send to
# another server connection) and no prepared statements.
DB_PGBOUNCER_TRANSACTION_MODE = env_bool("DB_PGBOUNCER_TRANSACTION_MODE", False)
if DB_PGBOUNCER_TRANSACTION_MODE:
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True
    DATABASES["default"]["OPTIONS"]["prepare_threshold"] = None
if os.environ.get("TEST_DATABASE_NAME"):
    # Lets parallel checkouts (and a Celery worker started by the tests) agree on one test database.
    DATABASES["default"]["TEST"] = {"NAME": os.environ["TEST_DATABASE_NAME"]}

# Streaming read replicas of `default` (config/replicas.py): the reads of GET requests go to one of them, everything
# else to the primary. Unset: no replica, every query on `default`.
DATABASE_REPLICA_URLS = env_list("DATABASE_REPLICA_URLS", [])
for _number, _url in enumerate(DATABASE_REPLICA_URLS, start=1):
    DATABASES[f"replica_{_number}"] = {
        **dj_database_url.parse(_url, conn_max_age=env_int("DB_CONN_MAX_AGE", 60)),
        "CONN_HEALTH_CHECKS": True,
        # A replica that does not answer is skipped for the primary; waiting long for it would only slow the read.
        "OPTIONS": {"connect_timeout": env_int("DB_REPLICA_CONNECT_TIMEOUT", 2)},
        # Under Django's test runner a replica is the test database itself, and config.replicas reads it as default.
        "TEST": {"MIRROR": "default"},
    }
DATABASE_ROUTERS = ["config.replicas.ReplicaRouter"]
# After a write, the sender's reads stay on the primary this long (longer than the replicas' usual lag).
REPLICA_PIN_SECONDS = env_int("REPLICA_PIN_SECONDS", 15)
# A replica that failed is left out this long before it is tried again.
REPLICA_RETRY_SECONDS = env_int("REPLICA_RETRY_SECONDS", 10)
# A replica further behind than this is skipped; each process checks each replica's lag at most this often.
REPLICA_MAX_LAG_SECONDS = env_float("REPLICA_MAX_LAG_SECONDS", 30.0)
REPLICA_CHECK_SECONDS = env_float("REPLICA_CHECK_SECONDS", 5.0)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = os.environ["REDIS_URL"]

# How long a call to Redis may wait for a connection: a Redis that is down or unreachable must fail the call fast, so
# that the request carries on without it (SPEC §7) instead of hanging.
REDIS_CONNECT_TIMEOUT_SECONDS = env_float("REDIS_CONNECT_TIMEOUT_SECONDS", 2.0)

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "crm",
        "TIMEOUT": 300,
        # The cached values are tiny (throttle counters, marks, the heartbeat): any answer takes milliseconds.
        "OPTIONS": {"socket_connect_timeout": REDIS_CONNECT_TIMEOUT_SECONDS, "socket_timeout": 5},
    }
}
# Sessions live in PostgreSQL so that browsing keeps working while Redis is away.
SESSION_ENGINE = "config.sessions"

# --- Celery ------------------------------------------------------------------------------------------------------

CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = REDIS_URL
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# One task at a time per process: a recompute or an import reserved behind another would wait for it (the short
# queues' workers may take more with --prefetch-multiplier, as docker-compose.yml does).
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_QUEUES = task_queues()
CELERY_TASK_DEFAULT_QUEUE = DEFAULT_QUEUE
CELERY_TASK_ROUTES = TASK_ROUTES
CELERY_RESULT_EXPIRES = 3600
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Queuing a task from a request while Redis is down must fail within a second, not block: every caller catches the
# error and carries on (the schedule or a sweep catches up). Kombu retries the producer's connection for ever
# otherwise, and the result backend subscribes to the task's result with 20 retries a second apart, both before the
# message is sent. Workers keep retrying their own connection (broker_connection_max_retries), as they should.
_FAIL_FAST = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}
CELERY_BROKER_TRANSPORT_OPTIONS = {**_FAIL_FAST, "socket_connect_timeout": REDIS_CONNECT_TIMEOUT_SECONDS}
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {"retry_policy": _FAIL_FAST}
CELERY_REDIS_SOCKET_CONNECT_TIMEOUT = REDIS_CONNECT_TIMEOUT_SECONDS
CELERY_TIMEZONE = os.environ.get("TIME_ZONE", "UTC")
WORKER_HEARTBEAT_SECONDS = env_int("WORKER_HEARTBEAT_SECONDS", 30)
# The full metrics recompute (forecasting); changes also queue a debounced one (METRICS_DEBOUNCE_SECONDS).
METRICS_RECOMPUTE_SECONDS = env_int("METRICS_RECOMPUTE_SECONDS", 300)
# The backtest and calibration have their own task (forecasting.recompute_history_metrics): daily, and whenever the
# latest run has none of their rows.
METRICS_HISTORY_SECONDS = env_int("METRICS_HISTORY_SECONDS", 24 * 3600)
# Between full recomputes, deal and activity changes are brought in incrementally: right after each change (after
# METRICS_REFRESH_DELAY_SECONDS), and on this schedule for any whose refresh could not be queued.
METRICS_REFRESH_SECONDS = env_int("METRICS_REFRESH_SECONDS", 60)
METRICS_REFRESH_DELAY_SECONDS = env_int("METRICS_REFRESH_DELAY_SECONDS", 0)
# Each entry through `scheduled`, which sets its expiry (1.5 intervals): nobody writes `expires` by hand.
CELERY_BEAT_SCHEDULE = {
    # A heartbeat queued during an outage says nothing once the outage is over.
    "worker-heartbeat": scheduled("config.celery.heartbeat", every_seconds=WORKER_HEARTBEAT_SECONDS),
    # Catches up with changes whose refresh was never queued (Redis or the broker away): they wait in PostgreSQL.
    "metrics-refresh": scheduled(
        "forecasting.refresh_metrics", every_seconds=METRICS_REFRESH_SECONDS, kwargs={"reason": "schedule"}
    ),
    "metrics-recompute": scheduled(
        "forecasting.recompute_metrics", every_seconds=METRICS_RECOMPUTE_SECONDS, kwargs={"reason": "schedule"}
    ),
    "metrics-history": scheduled(
        "forecasting.recompute_history_metrics", every_seconds=METRICS_HISTORY_SECONDS, kwargs={"reason": "schedule"}
    ),
    # Deliveries whose queued task was lost (Redis down, a worker killed mid-attempt) are sent again from here.
    "webhooks-send-due": scheduled("pipeline.webhooks.send_due_deliveries", every_seconds=60),
    "webhooks-prune-log": scheduled("pipeline.webhooks.prune_delivery_log", every_seconds=3600),
    "events-prune": scheduled("pipeline.webhooks.prune_events", every_seconds=3600),
    "idempotency-prune": scheduled("accounts.prune_idempotency_keys", every_seconds=3600),
}

# --- Internationalisation ----------------------------------------------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

# --- Static files ------------------------------------------------------------------------------------------------

STATIC_URL = "static/"
# build/static holds the front-end libraries that `python -m config.assets` installs (git-ignored).
STATICFILES_DIRS = [BASE_DIR / "static", BASE_DIR / "build" / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
# Uploaded files (CSV imports). Several web/worker hosts need this on shared storage.
MEDIA_URL = "media/"
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT") or BASE_DIR / "media")

STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    # Hashes made before Argon2 are still checked, and upgraded at the next login.
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]

# Login protection (django-axes; attempts are kept in PostgreSQL, so it works while Redis is away): an account, or an
# address, that fails this many times is locked for the cool-off period, with a page that says so and until when.
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 10)
AXES_COOLOFF_TIME = env_int("LOGIN_LOCKOUT_MINUTES", 15) / 60  # hours
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
# How long the answer of an API write sent with an Idempotency-Key is kept and replayed (Stripe keeps 24 h), and after
# how long a claimed key whose request never answered (its process died) may be used again.
IDEMPOTENCY_KEY_HOURS = env_int("IDEMPOTENCY_KEY_HOURS", 24)
IDEMPOTENCY_ABANDONED_SECONDS = env_int("IDEMPOTENCY_ABANDONED_SECONDS", 120)

# Proxies in front of the app whose X-Forwarded-For is believed, for the login lockouts and the API's rate limits.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)
AXES_CLIENT_IP_CALLABLE = "config.security.client_address"

# The same for API tokens, per client address (accounts.services.record_failed_token_attempt; kept in PostgreSQL
# too): the first failures are free, each further one makes the address wait twice as long before the next attempt
# (1 s, 2 s, 4 s, ...), and at the limit the address is locked out of token authentication for the lockout period.
API_TOKEN_FAILURE_LIMIT = env_int("API_TOKEN_FAILURE_LIMIT", AXES_FAILURE_LIMIT)
API_TOKEN_FAILURES_BEFORE_DELAY = env_int("API_TOKEN_FAILURES_BEFORE_DELAY", 3)
API_TOKEN_DELAY_SECONDS = env_int("API_TOKEN_DELAY_SECONDS", 1)
API_TOKEN_LOCKOUT_SECONDS = env_int("API_TOKEN_LOCKOUT_SECONDS", env_int("LOGIN_LOCKOUT_MINUTES", 15) * 60)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- The product -------------------------------------------------------------------------------------------------

# Currency of every amount until multi-currency exists (SPEC §3).
DEFAULT_CURRENCY = os.environ.get("DEFAULT_CURRENCY", "USD")
# "own": a rep sees only their own records; "team": a rep also sees (not edits) their team's (SPEC §2).
REP_VISIBILITY = os.environ.get("REP_VISIBILITY", "own")
if REP_VISIBILITY not in {"own", "team"}:
    raise ImproperlyConfigured("REP_VISIBILITY must be 'own' or 'team'")
# The pages' pick lists (pipeline.pick_lists) build and compare the query of each list found in their cache, to prove
# its name determines it: on in the tests, off where it would cost what the cache saves.
PICK_LISTS_CHECK_KEYS = False

# The weekly forecast call (SPEC §3a): a week's submitted value is the latest one before its lock instant, on this
# weekday (0 = Monday … 6 = Sunday) at this local time (HH:MM) in TIME_ZONE. Monday 09:00: the call reads last week.
FORECAST_LOCK_WEEKDAY = env_int("FORECAST_LOCK_WEEKDAY", 0)
if not 0 <= FORECAST_LOCK_WEEKDAY <= 6:
    raise ImproperlyConfigured("FORECAST_LOCK_WEEKDAY must be 0 (Monday) to 6 (Sunday)")
FORECAST_LOCK_TIME = os.environ.get("FORECAST_LOCK_TIME", "09:00")
if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", FORECAST_LOCK_TIME):
    raise ImproperlyConfigured("FORECAST_LOCK_TIME must be HH:MM (24 hours)")

# --- REST API (SPEC §4) ---------------------------------------------------------------------------------------

# Bodies above this size are refused: 413 in the API (DRF reads JSON through `request.body`, which checks it).
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 1024 * 1024)
# CSV imports are file uploads, which DATA_UPLOAD_MAX_MEMORY_SIZE does not count (Django streams files above
# FILE_UPLOAD_MAX_MEMORY_SIZE to a temporary file): they have their own limit, refused with 413.
IMPORT_MAX_FILE_SIZE = env_int("IMPORT_MAX_FILE_SIZE", 200 * 1024 * 1024)
# Files up to this size are imported within the request; larger ones on a Celery worker, with a progress bar.
IMPORT_INLINE_MAX_SIZE = env_int("IMPORT_INLINE_MAX_SIZE", 256 * 1024)

REST_FRAMEWORK = {
    # Bearer first: its `WWW-Authenticate` challenge makes an unauthenticated request a 401, not a 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.api.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PAGINATION_CLASS": "config.rest.ApiPagination",
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "config.rest.SearchFilter",
        "config.rest.OrderingFilter",
    ],
    "DEFAULT_THROTTLE_CLASSES": ["config.rest.UserRateThrottle", "config.rest.AnonymousRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "user": os.environ.get("API_THROTTLE_USER", "1200/minute"),
        "anon": os.environ.get("API_THROTTLE_ANON", "60/minute"),
    },
    "EXCEPTION_HANDLER": "config.api.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Pipeline CRM API",
    "DESCRIPTION": (
        "REST API v1 for integrations. Authenticate with `Authorization: Bearer <token>` (personal API tokens) or a "
        "browser session. Records outside your visibility answer 404; records you may see but not change answer 403 "
        "on writes. Detail reads return an `ETag`; writes honour `If-Match` (412 when it no longer matches). A deal's "
        "`version` sent in a write body is the same guard, answered with 409 when stale."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    # Served by the app itself (drf-spectacular-sidecar): the docs work without internet access.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "StageKindEnum": "pipeline.models.StageKind",
        "ForecastCategoryEnum": "pipeline.models.ForecastCategory",
        "LeadStatusEnum": "pipeline.models.LeadStatus",
        "ActivityKindEnum": "pipeline.models.ActivityKind",
        "RoleEnum": "accounts.models.Role",
        "PeriodKindEnum": "forecasting.models.PeriodKind",
        "GroupKindEnum": "forecasting.models.GroupKind",
        "MetricEnum": "forecasting.models.Metric",
        "ImportKindEnum": "pipeline.models.ImportKind",
        "ImportStatusEnum": "pipeline.models.ImportStatus",
        "DealChangeFieldEnum": "pipeline.api.serializers.CHANGE_FIELD_CHOICES",
        "BatchItemStatusEnum": "config.api.BATCH_ITEM_STATUSES",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "config.api_schema.add_error_responses",
    ],
}

# Metrics (forecasting, SPEC §3). Learned probabilities: prior strength k, and the closing-date window in days
# (0 = all history). Defaults only: an admin's values on /settings/metrics/ (stored in the database) win.
METRICS_PRIOR_STRENGTH = env_int("METRICS_PRIOR_STRENGTH", 10)
METRICS_LOOKBACK_DAYS = env_int("METRICS_LOOKBACK_DAYS", 365)
# A change queues one recompute this many seconds later; more changes meanwhile ride along with it.
METRICS_DEBOUNCE_SECONDS = env_int("METRICS_DEBOUNCE_SECONDS", 5)
METRICS_RECOMPUTE_ON_CHANGE = env_bool("METRICS_RECOMPUTE_ON_CHANGE", True)
# Complete runs kept (the newest is read; the one before it serves readers still on it).
METRICS_KEEP_RUNS = env_int("METRICS_KEEP_RUNS", 2)
# Memory of each sort and hash of a recompute's statements (hashes up to twice it, PostgreSQL's hash_mem_multiplier):
# at 64 MB the groupings of a million deals spilled to disk and were sorted where they could be hashed.
METRICS_WORK_MEM = os.environ.get("METRICS_WORK_MEM", "256MB")
METRICS_STATEMENT_TIMEOUT = os.environ.get("METRICS_STATEMENT_TIMEOUT", "10min")
# The backtest and calibration (forecasting.metrics.HISTORY_FAMILIES), whose task runs every METRICS_HISTORY_SECONDS:
# minutes on a million deals.
METRICS_HISTORY_STATEMENT_TIMEOUT = os.environ.get("METRICS_HISTORY_STATEMENT_TIMEOUT", "1h")
# Connections a full recompute runs its metric families on, side by side (PostgreSQL gives each query one core);
# 1 runs the whole recompute in one transaction.
METRICS_CONNECTIONS = env_int("METRICS_CONNECTIONS", 2)

# --- Webhooks (issue #9) ------------------------------------------------------------------------------------------

# Hosts that may receive deliveries although they resolve to loopback, private or link-local addresses (and that may
# use plain http): an operator's own internal receivers, or the tests' local one. Comma-separated in the environment.
WEBHOOK_ALLOWED_HOSTS = env_list("WEBHOOK_ALLOWED_HOSTS", [])
WEBHOOK_CONNECT_TIMEOUT_SECONDS = env_float("WEBHOOK_CONNECT_TIMEOUT_SECONDS", 3.0)
WEBHOOK_READ_TIMEOUT_SECONDS = env_float("WEBHOOK_READ_TIMEOUT_SECONDS", 5.0)
# Attempts per delivery before it is marked failed; retries wait base × 2^(attempt-1) (capped), with jitter.
WEBHOOK_MAX_ATTEMPTS = env_int("WEBHOOK_MAX_ATTEMPTS", 8)
WEBHOOK_RETRY_BASE_SECONDS = env_float("WEBHOOK_RETRY_BASE_SECONDS", 30.0)
WEBHOOK_RETRY_MAX_SECONDS = env_float("WEBHOOK_RETRY_MAX_SECONDS", 6 * 3600.0)
# A subscription whose deliveries fail this many times in a row (each after all its attempts) is disabled.
WEBHOOK_DISABLE_AFTER_FAILURES = env_int("WEBHOOK_DISABLE_AFTER_FAILURES", 10)
# After a secret is rotated, the previous one keeps signing deliveries (as a second `v1=`) this long.
WEBHOOK_SECRET_ROTATION_GRACE_SECONDS = env_int("WEBHOOK_SECRET_ROTATION_GRACE_SECONDS", 24 * 3600)
# Every event is fanned out to its subscriptions inside the request that wrote it: keep their number per user small.
WEBHOOK_MAX_SUBSCRIPTIONS_PER_USER = env_int("WEBHOOK_MAX_SUBSCRIPTIONS_PER_USER", 20)
# Finished deliveries (and their events) are deleted after this many days; the log is for diagnosis, not an archive.
WEBHOOK_LOG_RETENTION_DAYS = env_int("WEBHOOK_LOG_RETENTION_DAYS", 30)
# The event list (/api/v1/events/) keeps every event this many days (longer while a delivery of it is in the log):
# how far back a receiver can catch up after its own outage.
EVENT_RETENTION_DAYS = env_int("EVENT_RETENTION_DAYS", 30)
# The most events one replay queues; the answer says where it stopped, and the next replay continues from there.
WEBHOOK_REPLAY_MAX_EVENTS = env_int("WEBHOOK_REPLAY_MAX_EVENTS", 5000)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}
