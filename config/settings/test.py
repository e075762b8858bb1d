"""Settings for the test suite: PostgreSQL and Redis as in production, fast password hashing.

Without `DATABASE_URL` / `REDIS_URL` this starts (or reuses) the embedded servers; the test session stops those it
started when it ends (tests/conftest.py).
"""

import os
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from config import embedded

embedded.use_embedded_servers_unless_configured(announce=False)

from .base import *  # noqa: E402, F403
from .base import REDIS_URL, env_bool, env_int  # noqa: E402

SECRET_KEY = SECRET_KEY or "django-insecure-tests-only"  # noqa: F405
DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
PICK_LISTS_CHECK_KEYS = True

# A separate Redis database, so that a `make run` worker on the same server never takes the tests' tasks.
REDIS_URL = urlunsplit(urlsplit(REDIS_URL)._replace(path="/" + os.environ.get("TEST_REDIS_DB", "15")))
CELERY_BROKER_URL = CELERY_RESULT_BACKEND = REDIS_URL
CACHES["default"]["LOCATION"] = REDIS_URL  # noqa: F405
CACHES["default"]["KEY_PREFIX"] = "crm-test"  # noqa: F405

# Throttling has its own test; the rest of the suite (and the schema fuzzer) must never meet a 429.
REST_FRAMEWORK = {**REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"user": "100000/minute", "anon": "100000/minute"}}  # noqa: F405
# Likewise for failed token attempts, which the access matrix makes by the hundred from one address; their tests set
# the limits they need (the server of tests/faults/test_token_lockout.py through the environment).
API_TOKEN_FAILURES_BEFORE_DELAY = env_int("API_TOKEN_FAILURES_BEFORE_DELAY", 100_000)
API_TOKEN_FAILURE_LIMIT = env_int("API_TOKEN_FAILURE_LIMIT", 100_000)

# Tests that exercise the debounced recompute after a change turn it on themselves; elsewhere a write queuing
# Celery tasks into the test broker would only leave work behind for the next worker test.
# (The processes of tests/faults/test_redis_down.py run as in production, and say so through the environment.)
METRICS_RECOMPUTE_ON_CHANGE = env_bool("METRICS_RECOMPUTE_ON_CHANGE", False)
# One transaction, so that a recompute sees the test's uncommitted rows; tests/forecasting/test_services.py runs the
# recompute on several connections against committed data and compares, and real workers run it that way.
METRICS_CONNECTIONS = env_int("METRICS_CONNECTIONS", 1)

# Uploads made by tests (the schema fuzzer posts CSV imports) go to a scratch folder, not the checkout's media/.
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT") or Path(tempfile.gettempdir()) / "crm-test-media")
