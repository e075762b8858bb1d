"""`make loadtest` (`python -m tools.loadtest`): start the app as deployed, load it with locust, print the table.

1. A dedicated database (`LOADTEST_DATABASE_URL`, default: the `DATABASE_URL` server's `<name>_loadtest`), dropped
   and created afresh, migrated, seeded with `seed_demo --deals LOADTEST_DEALS`, metrics recomputed; an API token
   for each demo rep and manager (`tools.loadtest.prepare`).
2. gunicorn (`LOADTEST_WEB_WORKERS` workers) and a Celery worker with production settings, on loopback only.
3. locust, headless: `LOADTEST_USERS` virtual users (default 20) for `LOADTEST_SECONDS` (default 60).
4. Everything stopped, the broker queue purged and the database dropped (`LOADTEST_KEEP_DATABASE=1` keeps it).

Prints p50/p95, count, errors and 412s per request type; exits 1 if any request errored (5xx, connection error,
unexpected 4xx) or none was made. The API throttle gets its own rate for the run (`LOADTEST_API_THROTTLE_USER`,
default 100000/minute): several virtual users share one demo user's budget, and the test measures the app, not the
throttle (which has its own tests). The throttle still runs, counters in Redis and all.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from config import embedded
from tools.loadtest import results
from tools.processes import ROOT, Processes, production_environment

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value else default


def _with_path(url: str, path: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=path))


def loadtest_database_url() -> str:
    """`LOADTEST_DATABASE_URL`, or the `DATABASE_URL` server with the database `<its name>_loadtest`."""
    if os.environ.get("LOADTEST_DATABASE_URL"):
        return os.environ["LOADTEST_DATABASE_URL"]
    url = os.environ["DATABASE_URL"]
    return _with_path(url, urlsplit(url).path + "_loadtest")


def loadtest_redis_url() -> str:
    """`LOADTEST_REDIS_URL`, or the `REDIS_URL` server's database `LOADTEST_REDIS_DB` (default 13)."""
    if os.environ.get("LOADTEST_REDIS_URL"):
        return os.environ["LOADTEST_REDIS_URL"]
    return _with_path(os.environ["REDIS_URL"], "/" + os.environ.get("LOADTEST_REDIS_DB", "13"))


def _recreate_database(url: str, *, drop_only: bool = False) -> None:
    import psycopg
    from psycopg import sql

    info = psycopg.conninfo.conninfo_to_dict(url)
    name = info.pop("dbname")
    # The run drops this database: refuse any name that could be somebody's real data.
    if not name.endswith("_loadtest"):
        raise SystemExit(f"The load test's database must be named *_loadtest, not {name!r}.")
    with psycopg.connect(**info, dbname="postgres", autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if not drop_only:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _static_files_current() -> bool:
    """Whether `collectstatic` has run since the last change to the app's static files or the installed packages.

    Production's storage compresses every file (Django admin's and Swagger UI's too), which takes a minute or more
    on these machines: worth skipping when nothing changed.
    """
    manifest = ROOT / "staticfiles" / "staticfiles.json"
    if not manifest.exists():
        return False
    sources = [ROOT / "requirements.lock", *(ROOT / "static").rglob("*"), *(ROOT / "build" / "static").rglob("*")]
    return max(path.stat().st_mtime for path in sources) < manifest.stat().st_mtime


# Rows that the run's successful writes must have added, one each: a move always goes to another stage.
WRITE_CHECKS = (
    ("stage changes", "SELECT count(*) FROM pipeline_stagechange", ("API deal move",)),
    ("activities", "SELECT count(*) FROM pipeline_activity", ("API activity create", "deal activity log (form)")),
)


def _counts(database_url: str) -> dict[str, int]:
    """Row counts of what the writes add, and the id of the newest complete metrics recompute."""
    import psycopg

    with psycopg.connect(database_url) as conn:
        counts = {name: conn.execute(query).fetchone()[0] for name, query, _requests in WRITE_CHECKS}
        counts["recompute"] = conn.execute(
            "SELECT coalesce(max(id), 0) FROM forecasting_metricsrun WHERE status = 'complete'"
        ).fetchone()[0]
    return counts


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def main() -> int:
    users = _env_int("LOADTEST_USERS", 20)
    seconds = _env_int("LOADTEST_SECONDS", 60)
    deals = _env_int("LOADTEST_DEALS", 2000)
    web_workers = _env_int("LOADTEST_WEB_WORKERS", 4)
    port = _env_int("LOADTEST_PORT", 0)  # 0: a free one
    if not (1 <= users <= 200 and 1 <= seconds <= 3600):
        raise SystemExit("LOADTEST_USERS must be 1-200 and LOADTEST_SECONDS 1-3600: the load test is bounded.")

    os.environ["DATABASE_URL"], os.environ["REDIS_URL"], started = embedded.urls_from_environment()

    database_url, redis_url = loadtest_database_url(), loadtest_redis_url()
    workdir = Path(tempfile.mkdtemp(prefix="crm-loadtest-"))
    # Plain HTTP on loopback: the virtual users send X-Forwarded-Proto as the TLS-terminating proxy would.
    env = production_environment(
        database_url=database_url,
        redis_url=redis_url,
        API_THROTTLE_USER=os.environ.get("LOADTEST_API_THROTTLE_USER", "100000/minute"),
        LOG_LEVEL=os.environ.get("LOADTEST_LOG_LEVEL", "WARNING"),
        LOADTEST_CREDENTIALS=str(workdir / "credentials.json"),
        LOADTEST_RESULTS=str(workdir / "results.json"),
    )
    processes = Processes(workdir)

    def run(*command: str) -> None:
        subprocess.run(command, cwd=ROOT, env=env, check=True)

    def manage(*args: str) -> None:
        run(sys.executable, "manage.py", *args)

    def purge_broker() -> None:
        # Tasks queued by this run (recomputes, webhooks) must not outlive it, nor a previous aborted run's reach it.
        subprocess.run(
            [sys.executable, "-m", "celery", "-A", "config", "purge", "-f"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            check=False,
        )

    for signal_number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signal_number, lambda *_: sys.exit(1))
    try:
        print(
            f"Load test database {urlsplit(database_url).path.lstrip('/')}: migrate, seed {deals} deals ...", flush=True
        )
        _recreate_database(database_url)
        manage("migrate", "--noinput", "-v", "0")
        manage("seed_demo", "--deals", str(deals))
        manage("recompute_metrics")
        if not _static_files_current():
            print("Collecting static files as the production image does (once; a minute or two) ...", flush=True)
            manage("collectstatic", "--noinput", "-v", "0")
        purge_broker()
        run(sys.executable, "-m", "tools.loadtest.prepare", env["LOADTEST_CREDENTIALS"])

        worker = processes.worker(env, loglevel="WARNING")
        base_url, web = processes.web(env, workers=web_workers, port=port)
        print(f"gunicorn ({web_workers} workers) and a Celery worker are up on {base_url}.", flush=True)
        print(f"locust: {users} users for {seconds} s ...", flush=True)
        before = _counts(database_url)
        load_before = os.getloadavg()[0]
        locust = subprocess.run(
            [
                sys.executable,
                "-m",
                "locust",
                "--locustfile",
                str(LOCUSTFILE),
                "--headless",
                "--users",
                str(users),
                "--spawn-rate",
                str(users),
                "--run-time",
                f"{seconds}s",
                "--stop-timeout",
                "10",
                "--host",
                base_url,
                "--only-summary",
                "--loglevel",
                "WARNING",
            ],
            cwd=ROOT,
            env=env,
            stdout=(workdir / "locust.log").open("w"),
            stderr=subprocess.STDOUT,
            timeout=seconds + 180,
            check=False,
        )
        results_path = Path(env["LOADTEST_RESULTS"])
        if not results_path.exists():
            print(f"locust exited with {locust.returncode} and wrote no results:\n{_tail(workdir / 'locust.log')}")
            return 1
        outcome = json.loads(results_path.read_text())
        rows = results.summarize(outcome["requests"])
        after = _counts(database_url)
        print()
        print(
            f"{users} users, {seconds} s, {deals} demo deals, {web_workers} gunicorn workers "
            f"(machine load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after):"
        )
        print(results.table(rows))
        problems = results.problems(rows)
        # Nothing lost: every write answered with success is in the database, exactly once.
        for name, _query, request_names in WRITE_CHECKS:
            answered = sum(outcome["requests"].get(request, {}).get("succeeded", 0) for request in request_names)
            added = after[name] - before[name]
            print(f"{answered} successful writes of {name}, {added} new rows")
            if added != answered:
                problems.append(f"{answered} successful writes of {name} but {added} new rows")
        # Bounded by run ids: completed runs are pruned as new ones complete.
        print(f"metrics recomputes completed during the run (by run id): {after['recompute'] - before['recompute']}")
        for sample in outcome["error_samples"]:
            print(f"  error: {sample}")
        summary_path = os.environ.get("LOADTEST_SUMMARY")
        if summary_path:
            Path(summary_path).write_text(
                json.dumps([{k: v for k, v in vars(row).items() if k != "times_ms"} for row in rows])
            )
        if problems:
            print(f"\nFAILED: {'; '.join(problems)} (logs in {workdir})")
            for process in (web, worker):
                print(process.log(tail=3000))
            return 1
        print("\nNo errors.")
        shutil.rmtree(workdir, ignore_errors=True)
        return 0
    finally:
        processes.stop()
        purge_broker()
        if os.environ.get("LOADTEST_KEEP_DATABASE") not in {"1", "true", "yes"}:
            _recreate_database(database_url, drop_only=True)
        embedded.stop_started(started)
