"""Local development: debug on, an insecure key is acceptable because nothing here faces the internet.

Without `DATABASE_URL` / `REDIS_URL` this starts (or reuses) the embedded PostgreSQL and Valkey under `.data/` and
says so on stderr when it started one: they outlive the command that started them (so that `manage.py` commands, the
web server and Celery share them) until `make services-stop`.
"""

from config import embedded

embedded.use_embedded_servers_unless_configured(announce=True)

from .base import *  # noqa: E402, F403
from .base import env_bool  # noqa: E402

DEBUG = env_bool("DEBUG", True)
SECRET_KEY = SECRET_KEY or "django-insecure-local-development-only"  # noqa: F405
