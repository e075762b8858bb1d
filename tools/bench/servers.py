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
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

from config import embedded
from tools.processes import ROOT, production_environment

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
    """The environment of the deployed app (production settings over plain HTTP on loopback) on the bench's servers."""
    return production_environment(
        database_url=servers.database_url,
        redis_url=servers.redis_url,
        SECRET_KEY=os.environ.get("BENCH_SECRET_KEY") or secrets.token_urlsafe(64),
        # The rate limit stays in the request path (it costs a Redis round trip), far above what the bench sends.
        API_THROTTLE_USER="1000000/minute",
        LOG_LEVEL=os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
        MEDIA_ROOT=str(BUILD / "media"),
        **extra,
    )


def manage(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True)


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
