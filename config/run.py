"""`make run`: everything a developer needs, in the foreground, stopped together with Ctrl-C.

Starts the embedded PostgreSQL and Valkey unless `DATABASE_URL` / `REDIS_URL` point elsewhere, migrates, seeds the
demo data on the first run, then runs the web server, a Celery worker and Celery beat. On exit it stops the
processes it started, including the embedded servers (which are reused, data and all, on the next run).
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from config import embedded

ROOT = Path(__file__).resolve().parent.parent


def _manage(*args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, check=True)


def main() -> int:
    os.environ["DATABASE_URL"], os.environ["REDIS_URL"], started = embedded.urls_from_environment()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    embedded.ensure_database(os.environ["DATABASE_URL"])

    children: list[subprocess.Popen] = []

    def stop(*_: object) -> None:
        # A second Ctrl-C (or a TERM to the whole group) must not cut the orderly stop short and orphan the children.
        for signal_number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signal_number, signal.SIG_IGN)
        for child in children:
            if child.poll() is None:
                child.terminate()
        deadline = time.monotonic() + 10
        for child in children:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
        embedded.stop_started(started)

    # Explicit handlers: a shell that starts us in the background would otherwise leave SIGINT ignored.
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signal_number, lambda *_: sys.exit(0))
    try:
        _manage("migrate", "--noinput", "-v", "0")
        _manage("seed_demo", "--if-empty")
        # Fresh numbers for the dashboard now, rather than at the first scheduled recompute.
        _manage("recompute_metrics")
        host, port = os.environ.get("HOST", "127.0.0.1"), os.environ.get("PORT", "8000")
        celery = [sys.executable, "-m", "celery", "-A", "config"]
        beat_schedule = str(embedded.DATA_DIR / "celerybeat-schedule")
        embedded.DATA_DIR.mkdir(exist_ok=True)
        commands = [
            [sys.executable, "manage.py", "runserver", f"{host}:{port}", "--noreload"],
            [*celery, "worker", "--loglevel", "INFO", "--concurrency", os.environ.get("WORKER_CONCURRENCY", "2")],
            [*celery, "beat", "--loglevel", "INFO", "--schedule", beat_schedule],
        ]
        # Their own sessions: Ctrl-C reaches only this supervisor, which then stops them in order.
        children.extend(subprocess.Popen(command, cwd=ROOT, start_new_session=True) for command in commands)
        print(f"\nPipeline CRM is running on http://{host}:{port}/ (Ctrl-C stops everything).\n", flush=True)
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        failed = next(child for child in children if child.poll() is not None)
        print(f"{' '.join(failed.args[1:4])} exited with {failed.returncode}; stopping.", file=sys.stderr)
        return 1
    finally:
        stop()


if __name__ == "__main__":
    sys.exit(main())
