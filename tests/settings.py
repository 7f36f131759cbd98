"""Settings for the suite: production settings, pointed at the real local PostgreSQL and Redis.
Every value can be overridden from the environment; child processes (workers, web) inherit
these variables, so they share the test database, media folder and Celery queue."""

import os
import tempfile
import uuid

os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
os.environ.setdefault("SECURE_SSL_REDIRECT", "0")
os.environ.setdefault("SESSION_COOKIE_SECURE", "0")
os.environ.setdefault("CSRF_COOKIE_SECURE", "0")
os.environ.setdefault("PADDOCK_DEVICE", "cpu")
# Claim a dead worker's requests after 1 s (5 s by default) so fault tests stay short.
os.environ.setdefault("PADDOCK_CLAIM_IDLE_MS", "1000")
# One queue and key prefix per test session: a `make run` or another suite on the same Redis
# neither steals its tasks nor joins its workers.
_RUN = f"paddock-test-{uuid.uuid4().hex[:8]}"
os.environ.setdefault("PADDOCK_CELERY_QUEUE", _RUN)
os.environ.setdefault("PADDOCK_REDIS_PREFIX", _RUN)
os.environ.setdefault("MEDIA_ROOT", tempfile.mkdtemp(prefix="paddock-test-media-"))
os.environ.setdefault("PADDOCK_VAR_DIR", tempfile.mkdtemp(prefix="paddock-test-var-"))

from console.settings import *  # noqa: E402,F403

STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}  # noqa: F405
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins in tests
# pytest-django empties tables between transactional tests with TRUNCATE, which the audit table
# refuses (console migration 0003) unless the connection says so; only the suite's connections do.
if DATABASES["default"]["ENGINE"].endswith("postgresql"):  # noqa: F405
    DATABASES["default"].setdefault("OPTIONS", {})["options"] = "-c paddock.allow_audit_truncate=on"  # noqa: F405
