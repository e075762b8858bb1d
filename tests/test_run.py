"""`make run` (config/run.py) run as it is run: a subprocess, its children found by a marker in their environment."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from django.conf import settings

from config import embedded

ROOT = Path(__file__).resolve().parent.parent
MARKER = "CRM_RUN_TEST_MARKER"


def marked_processes(marker: str) -> list[int]:
    """The pids of live processes whose environment carries `marker` (the run and everything it started)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            environ = (entry / "environ").read_bytes().split(b"\0")
            state = next(line for line in (entry / "status").read_text().splitlines() if line.startswith("State:"))
            if f"{MARKER}={marker}".encode() in environ and "zombie" not in state:
                pids.append(int(entry.name))
    return pids


def start_run(tmp_path: Path, port: int, **env: str | None) -> tuple[subprocess.Popen, str, Path]:
    """`python -m config.run` on `port`, its embedded servers (if any) under tmp_path/data; None unsets a variable."""
    marker = uuid.uuid4().hex
    environment = {**os.environ, "PORT": str(port), "CRM_DATA_DIR": str(tmp_path / "data"), MARKER: marker}
    environment.pop("DJANGO_SETTINGS_MODULE", None)  # make run's own choice, the local settings
    for name, value in env.items():
        if value is None:
            environment.pop(name, None)
        else:
            environment[name] = value
    log = tmp_path / "run.log"
    with log.open("wb") as output:
        run = subprocess.Popen(
            [sys.executable, "-m", "config.run"],
            cwd=ROOT,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return run, marker, log


def kill_marked(marker: str) -> None:
    for pid in marked_processes(marker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_a_port_in_use_stops_make_run_at_once_with_the_command_to_use_instead(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        began = time.monotonic()
        run, marker, log = start_run(tmp_path, port, DATABASE_URL=None, REDIS_URL=None)
        try:
            returncode = run.wait(timeout=30)
        finally:
            kill_marked(marker)

    assert returncode == 1
    assert time.monotonic() - began < 15
    output = log.read_text()
    assert f"port {port} is in use — PORT={port + 1} make run" in output
    assert "is running" not in output
    # Nothing was started: no embedded server (they would live in the data folder), no migration, no child left.
    assert not (tmp_path / "data").exists()
    assert marked_processes(marker) == []


@pytest.mark.slow
def test_an_embedded_postgresql_that_cannot_start_is_explained_with_the_end_of_its_log(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        # The port the embedded PostgreSQL keeps across restarts is taken by something else.
        (data_dir / "postgres.port").write_text(str(holder.getsockname()[1]))
        with pytest.raises(embedded.EmbeddedServerError) as raised:
            embedded.start_postgres(data_dir)
        run, marker, log = start_run(tmp_path, embedded.free_port(), DATABASE_URL=None, REDIS_URL=None)
        try:
            returncode = run.wait(timeout=120)
        finally:
            kill_marked(marker)

    message = str(raised.value)
    assert message.startswith("The embedded PostgreSQL (port ")
    assert f"did not start (pg_ctl exited with 1). The end of {data_dir / 'postgres' / 'server.log'}:" in message
    assert "could not bind IPv4 address" in message  # the server's own reason, quoted from its log
    output = log.read_text()
    assert returncode == 1
    assert "could not bind IPv4 address" in output
    assert "Traceback" not in output and "CalledProcessError" not in output
    assert not embedded.redis_running(data_dir)  # nothing left behind: Valkey is not started after the failure


@pytest.fixture
def run_database_url(django_db_setup):
    """A fresh database for `make run` on the tests' PostgreSQL server, dropped afterwards."""
    name = f"{settings.DATABASES['default']['NAME']}_run"
    admin = urlunsplit(urlsplit(settings.DATABASE_URL)._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    # make run creates it, as it would on a fresh server.
    yield urlunsplit(urlsplit(settings.DATABASE_URL)._replace(path=f"/{name}"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.slow
def test_closing_the_terminal_stops_web_worker_beat_and_the_embedded_servers(tmp_path, run_database_url):
    port = embedded.free_port()
    # The tests' PostgreSQL (a fresh database), and an embedded Valkey of the run's own, which SIGHUP must stop too.
    run, marker, log = start_run(tmp_path, port, DATABASE_URL=run_database_url, REDIS_URL=None)
    try:
        deadline = time.monotonic() + 300
        while "is running" not in log.read_text():
            assert run.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        output = log.read_text()
        # "is running" is said once the web server answers, after the processes' start-up output.
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        assert output.rstrip().endswith("stops web, worker, beat and Valkey."), output[-3000:]
        assert "Demo logins:" in output.split("is running")[1]
        assert "celery@" not in output  # no Celery banner
        children = set(marked_processes(marker)) - {run.pid}
        assert len(children) >= 3  # web, worker, beat, Valkey (and the worker's pool once it has started)
        assert embedded.redis_running(tmp_path / "data")

        run.send_signal(signal.SIGHUP)
        assert run.wait(timeout=60) == 0
        deadline = time.monotonic() + 20
        while marked_processes(marker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert marked_processes(marker) == []
    finally:
        kill_marked(marker)
        embedded.stop_redis(tmp_path / "data")

    assert not embedded.redis_running(tmp_path / "data")
    assert "Stopped web, worker, beat and Valkey." in log.read_text()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # the port is free again
