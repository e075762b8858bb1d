"""`make run`: everything a developer needs, in the foreground, stopped together with Ctrl-C.

First it checks that the web port is free, and exits at once, starting nothing, when it is not. Then it starts the
embedded PostgreSQL and Valkey unless `DATABASE_URL` / `REDIS_URL` point elsewhere, migrates, seeds the demo data on
the first run, recomputes the metrics, and runs the web server, a Celery worker (every queue) and Celery beat. It
says the app is running once the web port answers, with the demo logins, after the processes' own start-up output.
Ctrl-C, a TERM, or closing the terminal (SIGHUP) stops the processes it started, including the embedded servers
(which are reused, data and all, on the next run), and it says what it stopped.
"""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from config import embedded

ROOT = Path(__file__).resolve().parent.parent
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# The embedded server used when each variable is unset.
EMBEDDED_FOR = {"postgres": "DATABASE_URL", "redis": "REDIS_URL"}
# How long the web server may take to answer on its port after it is started.
WEB_START_TIMEOUT = 120


class Stopped(Exception):
    """A stop signal arrived (Ctrl-C, TERM, the terminal closed)."""


def say(text: str, *, error: bool = False) -> None:
    """Print, unless the terminal is gone (after a SIGHUP): the stop must go on regardless."""
    with contextlib.suppress(OSError):
        print(text, file=sys.stderr if error else sys.stdout, flush=True)


def port_in_use(host: str, port: int) -> bool:
    """Whether the web server could not listen on host:port (something else holds it, on any address)."""
    with socket.socket() as sock:
        # As the web server itself binds: a port left in TIME_WAIT by the previous run is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def port_answers(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def _manage(*args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, check=True)


def _seed_demo() -> str:
    """Seed the demo data on the first run (its output passes through) and return its table of demo logins."""
    command = [sys.executable, "manage.py", "seed_demo", "--if-empty"]
    lines = []
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) as seeding:
        try:
            for line in seeding.stdout:
                say(line.rstrip("\n"))
                lines.append(line)
        except BaseException:
            seeding.kill()  # stopped meanwhile: the seeding must not go on (or be waited for)
            raise
    if seeding.returncode:
        raise subprocess.CalledProcessError(seeding.returncode, command)
    output = "".join(lines)
    return output[output.index("Demo logins:") :].rstrip() if "Demo logins:" in output else ""


def _server_names(started: list[str]) -> list[str]:
    return [embedded.SERVER_NAMES[name] for name in started]


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def main() -> int:
    host, port = os.environ.get("HOST", "127.0.0.1"), int(os.environ.get("PORT", "8000"))
    if port_in_use(host, port):
        say(f"port {port} is in use — PORT={port + 1} make run", error=True)
        return 1

    def on_signal(signal_number: int, _frame: object) -> None:
        raise Stopped(signal.Signals(signal_number).name)

    # Explicit handlers: a shell that starts us in the background would otherwise leave SIGINT ignored, and SIGHUP
    # (the terminal closed) would kill this supervisor alone, leaving every process it started running.
    for signal_number in STOP_SIGNALS:
        signal.signal(signal_number, on_signal)

    children: dict[str, subprocess.Popen] = {}
    started: list[str] = []
    # The embedded servers this run uses; those it does not start were started before it, and it leaves them be.
    embedded_used = [name for name, variable in EMBEDDED_FOR.items() if not os.environ.get(variable)]
    try:
        try:
            os.environ["DATABASE_URL"], os.environ["REDIS_URL"], started = embedded.urls_from_environment()
        except embedded.EmbeddedServerError as error:
            say(str(error), error=True)
            return 1
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
        os.environ["PYTHONUNBUFFERED"] = "1"  # the processes' output reaches the terminal as it is written
        embedded.ensure_database(os.environ["DATABASE_URL"])
        _manage("migrate", "--noinput", "-v", "0")
        logins = _seed_demo()
        # Fresh numbers for the dashboard now, rather than at the first scheduled recompute.
        _manage("recompute_metrics")

        # No banners (`-q`), and warnings only unless CELERY_LOGLEVEL says otherwise: a line per task every few
        # seconds would push the address and the logins off the screen.
        # Nor Celery's warning against running as root, which a local run in a container or on a CI machine gets:
        # it tells the developer nothing they chose not to know, in eight lines under the logins.
        not_as_root = "-Wignore:You're running the worker with superuser privileges"
        celery = [sys.executable, not_as_root, "-m", "celery", "-A", "config", "-q"]
        loglevel = os.environ.get("CELERY_LOGLEVEL", "WARNING")
        embedded.DATA_DIR.mkdir(parents=True, exist_ok=True)
        commands = {
            "web": [sys.executable, "manage.py", "runserver", f"{host}:{port}", "--noreload"],
            # Without -Q a worker consumes every queue of CELERY_TASK_QUEUES: one worker does all the work locally.
            "worker": [
                *celery,
                "worker",
                "--loglevel",
                loglevel,
                "--concurrency",
                os.environ.get("WORKER_CONCURRENCY", "2"),
            ],
            "beat": [
                *celery,
                "beat",
                "--loglevel",
                loglevel,
                "--schedule",
                str(embedded.DATA_DIR / "celerybeat-schedule"),
            ],
        }
        for name, command in commands.items():
            # Their own sessions: Ctrl-C reaches only this supervisor, which then stops them in order.
            children[name] = subprocess.Popen(command, cwd=ROOT, start_new_session=True)

        deadline = time.monotonic() + WEB_START_TIMEOUT
        while not port_answers(host, port):
            if exited := _exited(children):
                return exited
            if time.monotonic() > deadline:
                say(f"The web server did not answer on port {port} within {WEB_START_TIMEOUT} s; stopping.", error=True)
                return 1
            time.sleep(0.2)
        # Last, after the processes' start-up output, so that it is what the screen shows.
        servers = ["web", "worker", "beat", *_server_names(started)]
        say(f"\nPipeline CRM is running on http://{host}:{port}/\n")
        if logins:
            say(f"{logins}\n")
        say(f"Ctrl-C (or closing this terminal) stops {_and(servers)}.\n")
        while not (exited := _exited(children)):
            time.sleep(0.5)
        return exited
    except Stopped:
        return 0
    finally:
        _stop(children, started, reused=[name for name in embedded_used if name not in started])


def _exited(children: dict[str, subprocess.Popen]) -> int:
    """1, having said which, once a child has exited (the others are then stopped); else 0."""
    for name, child in children.items():
        if child.poll() is not None:
            say(f"{name} exited with {child.returncode}; stopping.", error=True)
            return 1
    return 0


def _stop(children: dict[str, subprocess.Popen], started: list[str], *, reused: list[str]) -> None:
    """Stop the children (each with its process group: runserver alone, Celery with its pool) and the embedded
    servers this run started, then say what was stopped and what was left running."""
    # A second Ctrl-C (or a TERM to the whole group) must not cut the orderly stop short and orphan the children.
    for signal_number in STOP_SIGNALS:
        signal.signal(signal_number, signal.SIG_IGN)
    for child in children.values():
        if child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    for child in children.values():
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        # Also the group of a child that exited: a pool process that outlived it must not hold the broker.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=10)
    embedded.stop_started(started)

    stopped = [*children, *_server_names(started)]
    if stopped:
        say(f"Stopped {_and(stopped)}.")
    if reused:
        names, many = _and(_server_names(reused)), len(reused) > 1
        say(
            f"The embedded {names} {'were' if many else 'was'} running before `make run` and "
            f"{'keep' if many else 'keeps'} running (`make services-stop` stops {'them' if many else 'it'})."
        )


if __name__ == "__main__":
    sys.exit(main())
