"""Production: refuses to start without its servers and a real secret key; secure cookies and HTTPS by default.

It never starts the embedded servers of local use: a deploy that forgot `DATABASE_URL` must fail, naming it, rather
than run on an empty database of its own.
"""

import os

from django.core.exceptions import ImproperlyConfigured


def _refusals() -> list[str]:
    """What the environment lacks for production, one line each (all of them at once, not the first only)."""
    examples = {"DATABASE_URL": "postgresql://user:password@host:5432/crm", "REDIS_URL": "redis://host:6379/0"}
    refusals = [
        f"{name} is not set (e.g. {example}); production never starts an embedded server"
        for name, example in examples.items()
        if not os.environ.get(name)
    ]
    key = os.environ.get("SECRET_KEY", "")
    if len(key) < 50 or key.startswith("django-insecure") or len(set(key)) < 5:
        refusals.append(
            "SECRET_KEY must be set to a random value of at least 50 characters "
            "(python -c 'import secrets; print(secrets.token_urlsafe(64))')"
        )
    return refusals


if refusals := _refusals():
    raise ImproperlyConfigured("Production settings refuse to start:\n" + "\n".join(f"- {line}" for line in refusals))

from .base import *  # noqa: E402, F403
from .base import ALLOWED_HOSTS, LOGGING, MIDDLEWARE, STORAGES, env_bool, env_int  # noqa: E402

DEBUG = False
# The container healthcheck probes http://127.0.0.1:8000/healthz from inside.
ALLOWED_HOSTS = [*ALLOWED_HOSTS, "127.0.0.1", "localhost"]
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
# Load balancers and docker healthchecks probe over plain HTTP inside the network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# Static files served by WhiteNoise, compressed and with cache-busting names (`collectstatic` runs in the image build).
MIDDLEWARE = [*MIDDLEWARE]
MIDDLEWARE.insert(
    MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1, "whitenoise.middleware.WhiteNoiseMiddleware"
)
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"}}

LOGGING["formatters"]["json"] = {"()": "config.logging.JsonFormatter"}
LOGGING["handlers"]["console"]["formatter"] = "json"
