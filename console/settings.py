"""Paddock settings: one module, everything read from the environment (see .env.example)."""

from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

from console.env import env_bool, env_float, env_int, env_list, env_secret, env_str
from console.mailsettings import *  # noqa: F403 - EMAIL_*, PASSWORD_RESET_*: kept apart for this module's size
from console.webhooksettings import *  # noqa: F403 - PADDOCK_WEBHOOK_*: kept apart for the same reason

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("PADDOCK_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", False)
_INSECURE_KEY = "insecure-dev-key-set-SECRET_KEY-in-production"
SECRET_KEY = env_secret("SECRET_KEY", _INSECURE_KEY if DEBUG else "")
if not SECRET_KEY:
    # Only development may run on the built-in key; say so rather than sign sessions with it.
    if env_bool("PADDOCK_ALLOW_INSECURE_KEY", False):
        SECRET_KEY = _INSECURE_KEY
    else:
        raise ImproperlyConfigured("SECRET_KEY is not set (or set DEBUG=1 for development)")
# A placeholder copied from .env.example, or a short key, signs sessions anyone can forge.
_PLACEHOLDER_KEYS = {"change-me", "changeme", "secret", "secret-key", "your-secret-key", _INSECURE_KEY}
if (not DEBUG and not env_bool("PADDOCK_ALLOW_INSECURE_KEY", False)
        and (SECRET_KEY.lower() in _PLACEHOLDER_KEYS or len(SECRET_KEY) < 32)):
    raise ImproperlyConfigured(
        "SECRET_KEY is a placeholder or shorter than 32 characters: set a long random one, e.g. "
        "python -c 'import secrets; print(secrets.token_urlsafe(50))'")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "console.sites.PaddockAdminConfig",  # django.contrib.admin, its password page audited
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "console",
    "registry",
    "serving",
    "workers",
    "webhooks",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "console.middleware.RequestIdMiddleware",
    # Before CSRF's: a database outage answers 503, a full disk 507 (console/middleware.py).
    "console.middleware.ServiceErrorMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "console.urls"
ASGI_APPLICATION = "console.asgi.application"
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
                "console.context_processors.approvals",  # the navigation's count of rollouts awaiting approval
            ],
        },
    },
]

# The embedded default is SQLite under var/; DATABASE_URL switches to Postgres.
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'paddock.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0),
    )
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Web, worker and beat share the file. A deferred transaction that reads, then writes, fails
    # at once with "database is locked" when another process is writing (SQLite cannot wait there
    # without risking a deadlock): a validation finished that way left its version `validating`.
    # IMMEDIATE takes the write lock at BEGIN, where the timeout applies; WAL lets reads go on
    # beside a write.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        timeout=20, transaction_mode="IMMEDIATE",
        init_command="PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")
    DATABASES["default"]["CONN_MAX_AGE"] = 0
else:
    # An unreachable server (not one that refuses at once) must count as an outage in seconds,
    # not after the operating system's connect timeout of minutes.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
        "connect_timeout", env_int("DATABASE_CONNECT_TIMEOUT", 5, minimum=1))
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "registry:model_list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "static")))
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
MEDIA_URL = "media/"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if not DEBUG
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG

# Uploads: anything above 2.5 MB streams to a temporary file, never into memory.
PADDOCK_MAX_UPLOAD_BYTES = env_int("PADDOCK_MAX_UPLOAD_BYTES", 512 * 1024 * 1024, minimum=1)
# Every other request body Django serves (forms, JSON); console/bodylimit.py refuses more with 413.
PADDOCK_MAX_REQUEST_BYTES = env_int("PADDOCK_MAX_REQUEST_BYTES", 1024 * 1024, minimum=1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
DATA_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
# Validation: the largest batch the smoke inference tries (a fixed batch axis wins).
PADDOCK_VALIDATION_MAX_BATCH = env_int("PADDOCK_VALIDATION_MAX_BATCH", 8, minimum=1)
# Which accelerator runtimes may use: auto (CUDA when a GPU is present), cpu, cuda.
PADDOCK_DEVICE = env_str("PADDOCK_DEVICE", "auto")
if PADDOCK_DEVICE not in {"auto", "cpu", "cuda"}:
    raise ImproperlyConfigured(f"PADDOCK_DEVICE={PADDOCK_DEVICE!r}: expected auto, cpu or cuda")
# A version stuck in `validating` this long (its worker died) is queued again by beat.
PADDOCK_VALIDATION_STALE_SECONDS = env_int("PADDOCK_VALIDATION_STALE_SECONDS", 600, minimum=10)
# Validation runs in a child process of the worker (registry/isolation.py) with these limits: its
# address space (2 GiB: onnxruntime or torch and a small model take well under 1 GiB of it), its
# CPU seconds, and the wall clock after which the worker kills it (below the stale age, or beat
# would start a second validation of a running one).
PADDOCK_VALIDATION_MEMORY_BYTES = env_int("PADDOCK_VALIDATION_MEMORY_BYTES", 2 * 1024**3, minimum=256 * 1024**2)
PADDOCK_VALIDATION_CPU_SECONDS = env_int("PADDOCK_VALIDATION_CPU_SECONDS", 300, minimum=1)
PADDOCK_VALIDATION_TIMEOUT_SECONDS = env_int("PADDOCK_VALIDATION_TIMEOUT_SECONDS", 300, minimum=1)
if PADDOCK_VALIDATION_TIMEOUT_SECONDS >= PADDOCK_VALIDATION_STALE_SECONDS:
    raise ImproperlyConfigured("PADDOCK_VALIDATION_TIMEOUT_SECONDS must be below PADDOCK_VALIDATION_STALE_SECONDS")
# A validation whose worker died or was stopped this many times ends `failed` instead of again.
PADDOCK_VALIDATION_MAX_ATTEMPTS = env_int("PADDOCK_VALIDATION_MAX_ATTEMPTS", 3, minimum=1)

# Celery: the docs' Django recipe (namespace CELERY_).
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", REDIS_URL)
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_DEFAULT_QUEUE = env_str("PADDOCK_CELERY_QUEUE", "paddock")
# Batch-job chunks have a queue of their own, which a worker reads only when the control queue
# (validations, rollout gates, rollups) is empty: Redis transport's "priority" queue order.
PADDOCK_JOBS_QUEUE = f"{CELERY_TASK_DEFAULT_QUEUE}.jobs"
CELERY_TASK_QUEUES = (Queue(CELERY_TASK_DEFAULT_QUEUE), Queue(PADDOCK_JOBS_QUEUE))
CELERY_BROKER_TRANSPORT_OPTIONS = {"queue_order_strategy": "priority"}
CELERY_TASK_ROUTES = {"workers.tasks.run_job_chunk": {"queue": PADDOCK_JOBS_QUEUE}}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
# Rollout gates are checked this often (beat), and the live figures rolled up into Postgres.
# Live figures kept in Postgres: 10 s periods for a day, minutes for 14 days.
PADDOCK_ROLLUP_10S_RETENTION_HOURS = env_int("PADDOCK_ROLLUP_10S_RETENTION_HOURS", 24, minimum=1)
PADDOCK_ROLLUP_1M_RETENTION_HOURS = env_int("PADDOCK_ROLLUP_1M_RETENTION_HOURS", 14 * 24, minimum=1)
PADDOCK_ROLLOUT_TICK_SECONDS = env_float("PADDOCK_ROLLOUT_TICK_SECONDS", 2.0, minimum=0.2)
# The Redis `make run` starts: a memory ceiling with `noeviction`, so that a full Redis refuses new
# requests with a clear 503 instead of evicting queued requests, replies or Celery's messages.
PADDOCK_EMBEDDED_REDIS_MAXMEMORY = env_str("PADDOCK_EMBEDDED_REDIS_MAXMEMORY", "512mb")
# The audit chain is keyed (HMAC-SHA256) by keys kept outside the database: "id:secret,..." with
# the current key first; older ones still verify the events they signed (rotation). Unset, one
# key is derived from SECRET_KEY. Each day's head (id, hash) is appended to the anchor file and
# logged, where the database user cannot rewrite it (docs/security.md: how to anchor it).
PADDOCK_AUDIT_KEYS = env_list("PADDOCK_AUDIT_KEYS")
PADDOCK_AUDIT_ANCHOR_FILE = env_str("PADDOCK_AUDIT_ANCHOR_FILE", str(VAR_DIR / "audit-anchors.jsonl"))
CELERY_BEAT_SCHEDULE = {
    "anchor-audit-head": {
        "task": "console.tasks.anchor_audit_head",
        "schedule": 24 * 3600.0,
    },
    "requeue-stale-validations": {
        "task": "registry.tasks.requeue_stale_validations",
        "schedule": 60.0,
    },
    "roll-up-metrics": {
        "task": "serving.tasks.roll_up_metrics",
        "schedule": 10.0,
        "options": {"expires": 20},
    },
    "requeue-stale-job-chunks": {
        "task": "serving.tasks.requeue_stale_job_chunks",
        "schedule": 5.0,
        "options": {"expires": 10},
    },
    "remove-expired-job-files": {
        "task": "serving.tasks.remove_expired_job_files",
        "schedule": 3600.0,
    },
    "run-due-job-schedules": {
        "task": "serving.tasks.run_due_job_schedules",
        "schedule": 30.0,
        "options": {"expires": 30},
    },
    "evaluate-rollouts": {
        "task": "serving.tasks.evaluate_rollouts",
        "schedule": PADDOCK_ROLLOUT_TICK_SECONDS,
        "options": {"expires": PADDOCK_ROLLOUT_TICK_SECONDS * 2},
    },
    "prune-webhook-deliveries": {
        "task": "webhooks.tasks.prune_webhook_deliveries",
        "schedule": 3600.0,
    },
}

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL]},
    }
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "console.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["console.permissions.HasScope"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "console.api.Pagination",  # LimitOffset with a ceiling on `limit`
    "PAGE_SIZE": 100,
    "EXCEPTION_HANDLER": "console.api.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Paddock management API",
    "DESCRIPTION": "Registry, tokens and audit log. The data plane (/v2) follows the KServe v2 protocol.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Production hardening: on unless DEBUG, each switchable for a TLS-terminating proxy setup.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("BEHIND_TLS_PROXY") else None
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31_536_000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    # The beat's tasks run every few seconds: their routine sent/received/succeeded lines are
    # dropped where Celery logs them (console/logs.py); their warnings and errors still show.
    "filters": {"periodic": {"()": "console.logs.QuietPeriodicTasks",
                             "tasks": [entry["task"] for entry in CELERY_BEAT_SCHEDULE.values()]}},
    "loggers": {name: {"filters": ["periodic"]}
                for name in ("celery.beat", "celery.worker.strategy", "celery.app.trace")},
}

# Data plane.
PADDOCK_MAX_INFER_BYTES = env_int("PADDOCK_MAX_INFER_BYTES", 64 * 1024 * 1024, minimum=1024)
# An infer request's tensors: at most this many dimensions each (their decoded bytes, all inputs
# together, are held to PADDOCK_MAX_INFER_BYTES as the body is). onnxruntime and Triton take up to
# numpy's 64, but no served model reaches 16 (images are 4-D, video 5-D) and every dimension is
# one more number for a caller to make huge; 64 is the most numpy can make at all.
PADDOCK_MAX_TENSOR_RANK = env_int("PADDOCK_MAX_TENSOR_RANK", 16, minimum=1)
if PADDOCK_MAX_TENSOR_RANK > 64:
    raise ImproperlyConfigured(f"PADDOCK_MAX_TENSOR_RANK={PADDOCK_MAX_TENSOR_RANK}: numpy allows at most 64")
# The most a request's `timeout` parameter (microseconds, as in Triton) may ask a web process to
# hold it: beyond this it is refused, not clamped, so that a caller knows.
PADDOCK_MAX_INFER_TIMEOUT_MS = env_int("PADDOCK_MAX_INFER_TIMEOUT_MS", 60_000, minimum=1)
# A request's `priority` parameter is 0 (the default, served after every explicit level) or 1 (first) to this.
PADDOCK_MAX_PRIORITY = env_int("PADDOCK_MAX_PRIORITY", 8, minimum=0)
PADDOCK_METRICS_PUBLIC = env_bool("PADDOCK_METRICS_PUBLIC", False)
# Failed token authentications an address may make in 10 s on the data plane; then 429 until the
# window ends (serving/v2/auth.py).
PADDOCK_AUTH_FAILURE_LIMIT = env_int("PADDOCK_AUTH_FAILURE_LIMIT", 20, minimum=1)
# Websocket streams one web process keeps open at most (then refused with 4429), and how long a
# stream without an Authorization header waits for its first message, {"auth": "Bearer <token>"}.
PADDOCK_WS_MAX_STREAMS = env_int("PADDOCK_WS_MAX_STREAMS", 1024, minimum=1)
PADDOCK_WS_AUTH_SECONDS = env_float("PADDOCK_WS_AUTH_SECONDS", 10.0, minimum=0.1)
# While PostgreSQL is unreachable the data plane serves the last good routes and tokens (each
# loaded at most this long ago; then 503 with the reason), and the batcher plans from the last
# good routes; the console and API answer 503 (serving/v2/outage.py, docs/reliability.md).
PADDOCK_DB_OUTAGE_GRACE_SECONDS = env_float("PADDOCK_DB_OUTAGE_GRACE_SECONDS", 300.0, minimum=0)
# Token last_used_at: each web process notes uses in memory and writes them in one UPDATE this often.
PADDOCK_TOKEN_USE_FLUSH_SECONDS = env_float("PADDOCK_TOKEN_USE_FLUSH_SECONDS", 10.0, minimum=0.1)
# Bytes of infer requests one web process holds until they are answered (serving/v2/budget.py: the
# body or message, decoded copies of its inputs, 4 KiB for the task around it), and one token's
# share of them; past either, 429 with Retry-After. 512 MiB keeps a web process under about 1 GiB
# with its own code and caches, room for 4 requests of PADDOCK_MAX_INFER_BYTES in JSON (about
# 128 MiB each, body and arrays) or some 100,000 small ones; beyond it a caller retries rather than
# the OOM killer ending every tenant's requests at once. A token gets a quarter, so one tenant never
# takes a process. A request is never refused for its size alone: one finds room where nothing is in flight.
PADDOCK_WEB_INFLIGHT_BYTES = env_int("PADDOCK_WEB_INFLIGHT_BYTES", 512 * 1024 * 1024, minimum=4096)
PADDOCK_TOKEN_INFLIGHT_BYTES = env_int("PADDOCK_TOKEN_INFLIGHT_BYTES", 128 * 1024 * 1024, minimum=4096)
# Mirrored requests (shadow traffic) waiting or running in a web process, with their live answers,
# besides the budget above: beyond this (or 4096 requests) they are skipped and counted as skipped.
# Shadow figures are a sample, so an eighth of the web budget is plenty.
PADDOCK_SHADOW_BACKLOG_BYTES = env_int("PADDOCK_SHADOW_BACKLOG_BYTES", 64 * 1024 * 1024, minimum=0)
# A request a worker took but did not answer for this long (the worker died) is claimed by another.
PADDOCK_CLAIM_IDLE_MS = env_int("PADDOCK_CLAIM_IDLE_MS", 5000, minimum=100)
# Workers evict least-recently-used versions to stay under this (estimated) memory budget.
PADDOCK_WORKER_MEMORY_MB = env_int("PADDOCK_WORKER_MEMORY_MB", 4096, minimum=64)
# A worker whose resident memory grows past this (long-running processes fragment and leak)
# stops taking batches, answers what it holds and exits to be started again (0: never). Twice
# the models' budget by default: the runtimes' arenas and buffers come on top of the models.
PADDOCK_WORKER_MAX_RSS_MB = env_int("PADDOCK_WORKER_MAX_RSS_MB", 2 * PADDOCK_WORKER_MEMORY_MB, minimum=0)
# On SIGTERM (or that recycling) a worker drains: it runs and answers every batch it read or
# holds, for this long at most; what is left then is claimed by another worker.
PADDOCK_WORKER_DRAIN_SECONDS = env_int("PADDOCK_WORKER_DRAIN_SECONDS", 30, minimum=1)
PADDOCK_INTRA_OP_THREADS = env_int("PADDOCK_INTRA_OP_THREADS", 0, minimum=0)
# Every Redis key of the data plane starts with this: installations sharing a Redis stay apart.
PADDOCK_REDIS_PREFIX = env_str("PADDOCK_REDIS_PREFIX", "paddock")

# Batch jobs (docs/jobs.md). An input file may be this large (413 beyond); its rows are split
# into chunks of PADDOCK_JOB_CHUNK_ROWS unless the job asks otherwise, at most
# PADDOCK_JOB_MAX_CHUNKS per job. A chunk that fails this many times fails its job.
PADDOCK_MAX_JOB_INPUT_BYTES = env_int("PADDOCK_MAX_JOB_INPUT_BYTES", 256 * 1024 * 1024, minimum=1)
PADDOCK_JOB_CHUNK_ROWS = env_int("PADDOCK_JOB_CHUNK_ROWS", 10_000, minimum=1)
PADDOCK_JOB_MAX_CHUNKS = env_int("PADDOCK_JOB_MAX_CHUNKS", 10_000, minimum=1)
PADDOCK_JOB_CHUNK_ATTEMPTS = env_int("PADDOCK_JOB_CHUNK_ATTEMPTS", 3, minimum=1)
# Each inference of a chunk takes at most this many rows and input bytes ("large batches" that
# still leave online requests a turn between them).
PADDOCK_JOB_RUN_ROWS = env_int("PADDOCK_JOB_RUN_ROWS", 1024, minimum=1)
PADDOCK_JOB_RUN_BYTES = env_int("PADDOCK_JOB_RUN_BYTES", 8 * 1024 * 1024, minimum=1024)
# While the worker serves online requests, a chunk rests this many times its last run's length
# after each run: online traffic comes first. 3: a chunk takes at most a quarter of the worker's
# time then (1.0 let M1's REST p99 at 64 clients reach 2.3x idle beside a job on 2 CPUs; 3 kept
# it at 1.2x: docs/benchmarks.md).
PADDOCK_JOB_ONLINE_YIELD = env_float("PADDOCK_JOB_ONLINE_YIELD", 3.0, minimum=0.0)
# An ended job's files (input, output) are removed this long after it ended; the row stays.
PADDOCK_JOB_RETENTION_DAYS = env_int("PADDOCK_JOB_RETENTION_DAYS", 7, minimum=1)
# Stream bindings (docs/streams.md) read Paddock's own Redis (keys under '<team>:') unless an
# operator lists other hosts here ("host" or "host:port", comma-separated; none by default).
PADDOCK_STREAM_REDIS_HOSTS = env_list("PADDOCK_STREAM_REDIS_HOSTS")

# Stream bindings: a message a worker read but never acknowledged (it died) is claimed by another
# after this long.
PADDOCK_STREAM_CLAIM_IDLE_MS = env_int("PADDOCK_STREAM_CLAIM_IDLE_MS", 10_000, minimum=100)

# Sign-ins (console and admin forms): failed ones are counted per account and per address for
# PADDOCK_LOGIN_THROTTLE_SECONDS; past either limit the form refuses until the window ends. Every
# sign-in is audited (console.authentication.ThrottledModelBackend). Counts live in Redis.
AUTHENTICATION_BACKENDS = ["console.authentication.ThrottledModelBackend"]
PADDOCK_LOGIN_FAILURES_PER_USER = env_int("PADDOCK_LOGIN_FAILURES_PER_USER", 5, minimum=1)
PADDOCK_LOGIN_FAILURES_PER_ADDRESS = env_int("PADDOCK_LOGIN_FAILURES_PER_ADDRESS", 20, minimum=1)
PADDOCK_LOGIN_THROTTLE_SECONDS = env_int("PADDOCK_LOGIN_THROTTLE_SECONDS", 900, minimum=1)
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},  # Django's own default
    "throttle": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL,
                 "KEY_PREFIX": PADDOCK_REDIS_PREFIX, "TIMEOUT": PADDOCK_LOGIN_THROTTLE_SECONDS},
}
