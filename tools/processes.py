"""The app's processes as they are deployed: gunicorn, a Celery worker and Celery beat, started from this checkout.

`make bench`, `make loadtest`, the fault tests and the tests' Celery worker fixture all start them through
`Processes`: each process in a session (process group) of its own, so that stopping it also stops its children
(gunicorn's workers, Celery's pool) and a Ctrl-C meant for the caller does not reach it first; its output in a log
file of its own; every wait with a deadline. Which settings they run with is the caller's environment
(`production_environment` for the app as deployed).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from config import embedded

ROOT = Path(__file__).resolve().parent.parent
# Long enough for a slow, shared machine; short enough that a process that hangs fails its caller instead of a job.
START_TIMEOUT = 90


def app_environment(*, settings_module: str, database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    """This process's environment for an app process on the given servers and settings, `extra` on top."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": settings_module,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "PYTHONUNBUFFERED": "1",  # the logs are read while the process runs
        **extra,
    }
    env.pop("TEST_DATABASE_NAME", None)  # the URL names the database already
    return env


def production_environment(*, database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    """The environment of the app as deployed, over plain HTTP on loopback: production settings, a throwaway
    secret key (unless `extra` gives one) and no redirect to HTTPS, as there is no TLS proxy in front."""
    return app_environment(
        settings_module="config.settings.production",
        database_url=database_url,
        redis_url=redis_url,
        **{"SECRET_KEY": secrets.token_urlsafe(64), "SECURE_SSL_REDIRECT": "false", **extra},
    )


class AppProcess:
    """A process in a session (process group) of its own, its output in `log_path`."""

    def __init__(
        self,
        name: str,
        command: list[str],
        *,
        log_path: Path,
        env: dict[str, str] | None = None,
        cwd: Path = ROOT,
    ):
        self.name = name
        self.log_path = log_path
        with log_path.open("wb") as log:  # the child keeps its own copy of the descriptor
            self.popen = subprocess.Popen(
                command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole group: a crash, not a shutdown."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)

    def stop(self, *, grace: float = 20) -> None:
        stop_process_groups([self], grace=grace)

    def log(self, tail: int = 6000) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return f"--- {self.name} log ---\n{text[-tail:]}"


def stop_process_groups(processes: Iterable[AppProcess], *, grace: float = 20) -> None:
    """Stop processes and their groups: SIGTERM to all, then SIGKILL to each group after `grace` s in all.

    The SIGKILL goes to every group, even of a process that exited: children that outlived it (a gunicorn worker,
    a pool process) must not hold a port or a database connection after the caller has moved on.
    """
    processes = list(processes)
    for process in processes:
        if process.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.popen.wait(timeout=10)


def logs_of(*processes: AppProcess) -> Callable[[], str]:
    """The logs of `processes` as they are when called (for the message of a failed wait)."""
    return lambda: "\n".join(process.log() for process in processes)


def wait_for(
    condition: Callable[[], Any],
    *,
    timeout: float,
    what: str,
    logs: Callable[[], str] = str,
    watch: Sequence[AppProcess] = (),
) -> Any:
    """Poll `condition` until it returns something truthy and return that; raise TimeoutError after `timeout` s,
    or RuntimeError as soon as a process in `watch` has exited. The message names `what` and ends with `logs`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except Exception:  # noqa: BLE001 - a server still starting refuses connections; keep polling
            value = None
        if value:
            return value
        exited = [process.name for process in watch if not process.alive()]
        if exited:
            raise RuntimeError(f"{', '.join(exited)} exited while waiting for {what}\n{logs()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}\n{logs()}")
        time.sleep(0.2)


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


class Processes:
    """The processes one caller (a bench run, a load test, a test) starts, their logs in `log_dir`; `stop()` ends
    them all, and leaving the `with` block does too."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        self.started: list[AppProcess] = []

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(
        self,
        name: str,
        command: list[str],
        *,
        env: dict[str, str] | None = None,
        cwd: Path = ROOT,
    ) -> AppProcess:
        process = AppProcess(name, command, log_path=self.log_dir / f"{name}.log", env=env, cwd=cwd)
        self.started.append(process)
        return process

    def web(
        self,
        env: dict[str, str],
        *,
        workers: int,
        threads: int = 1,
        timeout: int = 30,
        graceful_timeout: int = 30,
        port: int = 0,
        healthy: Sequence[int] = (200,),
        name: str = "web",
    ) -> tuple[str, AppProcess]:
        """gunicorn serving the app on loopback (`port`, or a free one), once `/healthz` answers a `healthy` status;
        its base URL. The defaults of `threads` and the timeouts are gunicorn's."""
        port = port or embedded.free_port()
        command = [sys.executable, "-m", "gunicorn", "config.wsgi:application", "--bind", f"127.0.0.1:{port}"]
        command += ["--workers", str(workers), "--threads", str(threads)]
        command += ["--timeout", str(timeout), "--graceful-timeout", str(graceful_timeout)]
        # Its default control socket is one path per machine user: parallel runs would fight over it.
        command += ["--no-control-socket"]
        web = self.start(name, command, env=env)
        base_url = f"http://127.0.0.1:{port}"
        wait_for(
            lambda: _status(f"{base_url}/healthz") in healthy,
            timeout=START_TIMEOUT,
            what=f"gunicorn to answer {base_url}/healthz",
            logs=logs_of(web),
            watch=[web],
        )
        return base_url, web

    def worker(
        self,
        env: dict[str, str],
        *,
        pool: str = "prefork",
        concurrency: int = 1,
        loglevel: str = "INFO",
        queues: Sequence[str] = (),
        name: str = "worker",
    ) -> AppProcess:
        """A Celery worker (not waited for: tasks wait in the broker until it takes them), consuming `queues`, or
        without them every queue of CELERY_TASK_QUEUES (the recompute, the refresh, webhooks, imports, the default),
        as one worker does locally; `config.celery.WORKER_GROUPS` are the groups of a deploy."""
        command = [sys.executable, "-m", "celery", "-A", "config", "worker", "--loglevel", loglevel]
        command += ["--pool", pool, "--concurrency", str(concurrency)]
        if queues:
            command += ["--queues", ",".join(queues)]
        # A name of its own, so that workers of parallel runs on one Redis server never pass for each other; no
        # gossip or mingle: there is no cluster of workers to meet, and they would slow the start.
        command += ["--hostname", f"{name}-{uuid.uuid4().hex[:8]}@%h", "--without-gossip", "--without-mingle"]
        return self.start(name, command, env=env)

    def beat(
        self, env: dict[str, str], *, schedule_file: Path, loglevel: str = "INFO", name: str = "beat"
    ) -> AppProcess:
        """Celery beat, its schedule state in `schedule_file`."""
        command = [sys.executable, "-m", "celery", "-A", "config", "beat", "--loglevel", loglevel]
        command += ["--schedule", str(schedule_file)]
        return self.start(name, command, env=env)

    def stop(self, *, grace: float = 20) -> None:
        """Stop every process started here (all at once: a SIGTERM each, then the grace period for them all)."""
        stop_process_groups(reversed(self.started), grace=grace)
