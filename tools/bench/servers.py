"""The app as deployed, for `make bench`: a dedicated database with its dataset, gunicorn, a Celery worker, Redis.

The database `<name>_bench_<size>` lives on the server of `DATABASE_URL` (or the embedded PostgreSQL when it is
unset, as for `make run`). Its dataset is generated once and reused: the table `bench_dataset` records the
generator version, seed and size it was made with, and a mismatch regenerates it. Redis is the server of
`REDIS_URL` (or the embedded one), database `BENCH_REDIS_DB` (default 13), flushed at the start of every run:
it must be used by nothing else.
"""

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

from config import embedded

ROOT = Path(__file__).resolve().parent.parent.parent
BUILD = ROOT / "build" / "bench"
WEB_WORKERS = int(os.environ.get("BENCH_WEB_WORKERS", "4"))
WORKER_CONCURRENCY = int(os.environ.get("BENCH_WORKER_CONCURRENCY", "2"))


@dataclass
class Servers:
    database_url: str
    redis_url: str
    started_embedded: list[str] = field(default_factory=list)

    @property
    def database_name(self) -> str:
        return psycopg.conninfo.conninfo_to_dict(self.database_url)["dbname"]


def _with_database(url: str, name: str) -> str:
    """`url` naming database `name` instead (user, host, port and options kept)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def _with_redis_db(url: str, db: int) -> str:
    base = url.rsplit("/", 1)[0] if url.count("/") > 2 else url
    return f"{base}/{db}"


def resolve(size: str) -> Servers:
    """The bench database and Redis URLs for `size`, starting the embedded servers when none are configured."""
    base_db, base_redis, started = embedded.urls_from_environment()
    name = psycopg.conninfo.conninfo_to_dict(base_db)["dbname"]
    return Servers(
        database_url=_with_database(base_db, f"{name}_bench_{size.lower()}"),
        redis_url=_with_redis_db(base_redis, int(os.environ.get("BENCH_REDIS_DB", "13"))),
        started_embedded=started,
    )


def app_environment(servers: Servers, **extra: str) -> dict[str, str]:
    """The environment of the deployed app: production settings over plain HTTP on loopback."""
    env = dict(os.environ)
    env.update(
        DATABASE_URL=servers.database_url,
        REDIS_URL=servers.redis_url,
        DJANGO_SETTINGS_MODULE="config.settings.production",
        SECRET_KEY=os.environ.get("BENCH_SECRET_KEY") or secrets.token_urlsafe(64),
        SECURE_SSL_REDIRECT="0",  # loopback HTTP, no TLS proxy in front
        # The rate limit stays in the request path (it costs a Redis round trip), far above what the bench sends.
        API_THROTTLE_USER="1000000/minute",
        LOG_LEVEL=os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
        MEDIA_ROOT=str(BUILD / "media"),
    )
    env.update(extra)
    return env


def manage(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True)


class Processes:
    """gunicorn and a Celery worker, each in its own session, stopped together."""

    def __init__(self, env: dict[str, str]):
        self.env = env
        self.port = embedded.free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.children: list[subprocess.Popen] = []
        (BUILD / "logs").mkdir(parents=True, exist_ok=True)
        self.worker_log = BUILD / "logs" / "worker.log"

    def start(self) -> None:
        web = [
            sys.executable,
            "-m",
            "gunicorn",
            "config.wsgi",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(WEB_WORKERS),
            "--timeout",
            "300",
        ]
        # INFO: the recompute logs the seconds of each metric family, which the report uses.
        worker = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--loglevel",
            "INFO",
            "--concurrency",
            str(WORKER_CONCURRENCY),
            "--without-mingle",
            "--without-gossip",
        ]
        for command, log in ((web, "gunicorn.log"), (worker, "worker.log")):
            handle = open(BUILD / "logs" / log, "w")  # noqa: SIM115 — kept open for the child's lifetime
            self.children.append(
                subprocess.Popen(
                    command, cwd=ROOT, env=self.env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
                )
            )
        deadline = time.monotonic() + 120
        while True:
            try:
                if urllib.request.urlopen(f"{self.base_url}/login/", timeout=5).status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or any(child.poll() is not None for child in self.children):
                raise RuntimeError(f"the app did not start; see {BUILD / 'logs'}")
            time.sleep(0.5)

    @property
    def worker_pid(self) -> int:
        return self.children[1].pid

    def stop(self) -> None:
        stop_process_groups(self.children)


def stop_process_groups(processes: list[subprocess.Popen], *, grace: float = 20) -> None:
    """Stop processes started in sessions of their own, with their children: TERM, then KILL after `grace` s."""
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def child_pids(pid: int) -> list[int]:
    """Direct children of `pid` (the Celery worker's pool processes)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def reset_peak_rss(pids: list[int]) -> None:
    """Reset VmHWM (Linux: writing 5 to clear_refs), so the next reading is the peak of what runs in between."""
    for pid in pids:
        with contextlib.suppress(OSError):
            Path(f"/proc/{pid}/clear_refs").write_text("5")


def peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None
