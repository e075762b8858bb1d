"""`make loadtest`'s harness: the runner brings the deployed app up, loads it, judges the run and cleans up.

The real run (20 users, 60 s) is `make loadtest`, reported by hand; here 2 users for a few seconds prove the harness.
"""

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from django.conf import settings

from tools.loadtest import results
from tools.percentile import percentile

ROOT = Path(__file__).resolve().parent.parent


def test_percentiles_are_nearest_rank():
    """The one percentile of `make loadtest`'s table and `make bench`'s rows."""
    times = [float(t) for t in range(1, 101)]

    assert percentile(times, 0.50) == 50.0
    assert percentile(times, 0.95) == 95.0
    assert percentile([7.0], 0.95) == 7.0
    assert percentile([], 0.95) == 0.0


def test_a_run_with_an_errored_request_fails_and_a_412_alone_does_not():
    clean = results.summarize(
        {"API deal move": {"times_ms": [30.0, 40.0], "errors": 0, "precondition_failed": 1}},
    )
    errored = results.summarize(
        {
            "API deal move": {"times_ms": [30.0], "errors": 0, "precondition_failed": 0},
            "board": {"times_ms": [80.0, 90.0], "errors": 1, "precondition_failed": 0},
        }
    )

    assert results.problems(clean) == []
    assert results.problems(errored) == ["1 errors in board"]
    assert results.problems(results.summarize({})) == ["no request was made"]
    assert "API deal move" in results.table(clean)


def _url_with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


@pytest.mark.slow
def test_the_runner_loads_the_deployed_app_without_errors_and_drops_its_database(tmp_path):
    database_name = f"{settings.DATABASES['default']['NAME'].removeprefix('test_')}_harness_loadtest"
    summary_path = tmp_path / "summary.json"
    env = {
        **os.environ,
        "DATABASE_URL": settings.DATABASE_URL,
        "REDIS_URL": settings.REDIS_URL,
        "LOADTEST_DATABASE_URL": _url_with_database(settings.DATABASE_URL, database_name),
        # The tests' own Redis database: the run's worker never meets a `make run` worker's tasks.
        "LOADTEST_REDIS_URL": settings.REDIS_URL,
        "LOADTEST_USERS": "2",
        "LOADTEST_SECONDS": "6",
        "LOADTEST_DEALS": "60",
        "LOADTEST_WEB_WORKERS": "2",
        "LOADTEST_SUMMARY": str(summary_path),
    }

    run = subprocess.run(
        [sys.executable, "-m", "tools.loadtest"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )

    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    rows = {row["name"]: row for row in json.loads(summary_path.read_text())}
    # Both kinds of user got in: a session login, and token-authenticated API calls after it.
    assert rows["login (session)"]["count"] >= 1
    assert rows["API stages (setup)"]["count"] == 2
    assert sum(row["count"] for row in rows.values()) > 5
    assert all(row["errors"] == 0 for row in rows.values())
    assert "p95 ms" in run.stdout
    with psycopg.connect(_url_with_database(settings.DATABASE_URL, "postgres")) as conn:
        left = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database_name]).fetchone()
    assert left is None, "the runner must drop its database"
