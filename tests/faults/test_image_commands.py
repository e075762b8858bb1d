"""The image's own start commands, as far as this machine allows (no Docker daemon): docker-compose.yml's migrate,
web, worker, worker-long and beat commands, with its environment, run as an unprivileged user in a tree laid out as
the Dockerfile lays out /app (the code as the build context lets it in, the collected static files, a media folder
the user owns), and a CSV import sent to web and run by the worker that consumes the imports queue.

What differs from the image, and why: the interpreter is this checkout's virtualenv (the image installs
requirements-runtime.lock into the system Python; tests/test_deploy.py checks that lock statically), the user is
`nobody` rather than `crm`, the tree is a temporary folder rather than /app (parallel runs on one machine), web
binds a free loopback port rather than 0.0.0.0:8000, and beat's schedule file and the workers' names are per run.
"""

import fnmatch
import os
import pwd
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import requests
import yaml
from django.conf import settings

from accounts.services import create_api_token
from pipeline.models import Deal, ImportJob
from tests.factories import make_user
from tests.faults.conftest import REQUEST_TIMEOUT, ROOT, START_TIMEOUT, committed_database_url, free_port, wait_for
from tools.processes import logs_of

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(os.geteuid() != 0, reason="running the commands as another user needs root"),
]

USER = "nobody"
# util-linux's setpriv: the user's uid and group, no supplementary groups, then exec (the same process id).
AS_USER = ["setpriv", f"--reuid={USER}", f"--regid={pwd.getpwnam(USER).pw_gid}", "--clear-groups", "--"]
# Above IMPORT_INLINE_MAX_SIZE (256 KiB), so that web queues the import for a worker instead of running it.
ROWS = 2500


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore keeps `path` (relative, with slashes) out of the build context."""
    parts = path.split("/")
    for pattern in patterns:
        bare = pattern.removeprefix("**/")
        if pattern.startswith("**/"):
            if any(fnmatch.fnmatch(part, bare) for part in parts) or fnmatch.fnmatch(path, pattern):
                return True
        elif fnmatch.fnmatch(path, pattern) or any(
            fnmatch.fnmatch("/".join(parts[: i + 1]), pattern) for i in range(len(parts))
        ):
            return True
    return False


def lay_out_image(app: Path, uid: int) -> None:
    """`/app` as the Dockerfile's runtime stage leaves it: `COPY --chown=crm:crm . .` (the build context, less
    .dockerignore), the build stage's staticfiles and build/static, and /app and /app/media owned by the user."""
    patterns = [
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip() and line[0] != "#"
    ]
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        if dockerignored(name, patterns) or not (ROOT / name).is_file():
            continue
        (app / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, app / name)
    shutil.copytree(ROOT / "build" / "static", app / "build" / "static")
    # The build stage's collectstatic, with its placeholders (they never serve a request).
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        cwd=app,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.production",
            "SECRET_KEY": "build-only-placeholder-not-used-at-runtime-0123456789abcdefghij",
            "DATABASE_URL": "postgresql://build@localhost/build",
            "REDIS_URL": "redis://localhost:6379/0",
            "PYTHONDONTWRITEBYTECODE": "1",
        },
        check=True,
        capture_output=True,
    )
    (app / "media").mkdir()
    gid = pwd.getpwuid(uid).pw_gid
    for path in [app, *app.rglob("*")]:
        os.chown(path, uid, gid, follow_symlinks=False)


def substitute(value: str, variables: dict[str, str]) -> str:
    """Compose's `${NAME}`, `${NAME:-default}` and `${NAME:?message}`."""

    def one(match: re.Match) -> str:
        name, operator, rest = match.group(1), match.group(2), match.group(3) or ""
        if name in variables and variables[name] != "":
            return variables[name]
        if operator == ":?":
            raise AssertionError(f"compose needs {name}: {rest}")
        return rest if operator == ":-" else ""

    return re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", one, value)


def compose_services(variables: dict[str, str]) -> dict[str, dict]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = {}
    for name, service in compose["services"].items():
        services[name] = {
            "command": [substitute(str(part), variables) for part in service.get("command", [])],
            "environment": {
                key: substitute(str(value), variables) for key, value in service.get("environment", {}).items()
            },
        }
    return services


def reachable_interpreter(base: Path) -> Path:
    """This checkout's virtualenv, with its base Python copied under `base` (as the image has its own Python in
    /usr/local): the base may live where the user cannot reach it (pyenv under /root), and a user who cannot would
    silently run another Python from PATH."""
    source = Path(sys.base_prefix)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    python = base / "python"
    (python / "bin").mkdir(parents=True)
    shutil.copy2(Path(sys.executable).resolve(), python / "bin" / version)
    (python / "lib").mkdir()
    for library in (source / "lib").glob("libpython*"):
        shutil.copy2(library, python / "lib" / library.name, follow_symlinks=False)
    shutil.copytree(
        source / "lib" / version,
        python / "lib" / version,
        ignore=shutil.ignore_patterns("site-packages", "test", "idlelib", "tkinter", "ensurepip"),
        symlinks=True,
    )
    venv = base / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "lib" / version).mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(python / "bin" / version)
    site_packages = Path(sys.prefix).resolve() / "lib" / version / "site-packages"
    (venv / "lib" / version / "site-packages").symlink_to(site_packages)
    (venv / "pyvenv.cfg").write_text(f"home = {python / 'bin'}\ninclude-system-site-packages = false\n")
    return venv / "bin" / "python"


def local_command(command: list[str], python: Path) -> list[str]:
    """The image's command with `python` (the image's PATH has python, gunicorn and celery)."""
    program, *arguments = command
    return [str(python), *arguments] if program == "python" else [str(python), "-m", program, *arguments]


def replace_option(command: list[str], option: str, value: str) -> list[str]:
    index = command.index(option)
    return [*command[: index + 1], value, *command[index + 2 :]]


def uid_of(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^Uid:\s+(\d+)", status, re.M).group(1))


@pytest.fixture
def image_root():
    # Traversable by the unprivileged user (pytest's tmp_path is private to root).
    base = Path(tempfile.mkdtemp(prefix="image-"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def test_the_image_commands_run_unprivileged_and_import_a_file_through_web_and_worker(processes, pipeline, image_root):
    uid = pwd.getpwnam(USER).pw_uid
    app = image_root / "app"
    lay_out_image(app, uid)
    python = reachable_interpreter(image_root)
    imports = subprocess.run(
        [*AS_USER, str(python), "-c", "import django"],
        env={"LD_LIBRARY_PATH": str(image_root / "python" / "lib")},
        capture_output=True,
        text=True,
    )
    if imports.returncode != 0:
        # The image installs its packages where its user reads them; here they are the checkout's virtualenv.
        pytest.skip(f"{USER} cannot read this checkout's virtualenv (a parent folder is private): {imports.stderr}")
    home = image_root / "home"
    home.mkdir()
    os.chown(home, uid, pwd.getpwuid(uid).pw_gid)
    rep = make_user(username="rep")
    _, token = create_api_token(user=rep, name="image")

    port = free_port()
    variables = {
        "SECRET_KEY": secrets.token_urlsafe(64),
        "WORKER_CONCURRENCY": "1",
        "LONG_WORKER_CONCURRENCY": "1",
        "WEB_WORKERS": "2",
    }
    services = compose_services(variables)
    env = {
        # The image's ENV, then compose's environment with the servers of this test.
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        # The copied interpreter's libpython (its run path names the original's folder).
        "LD_LIBRARY_PATH": str(image_root / "python" / "lib"),
        **services["web"]["environment"],
        "DATABASE_URL": committed_database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "MEDIA_ROOT": str(app / "media"),
    }
    assert env["DJANGO_SETTINGS_MODULE"] == "config.settings.production"
    assert env["SECURE_SSL_REDIRECT"] == "true"  # kept: the requests below say they came over HTTPS

    migrate = subprocess.run(
        [*AS_USER, *local_command(services["migrate"]["command"], python)],
        cwd=app,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr

    web_command = replace_option(local_command(services["web"]["command"], python), "--bind", f"127.0.0.1:{port}")
    web = processes.start("web", [*AS_USER, *web_command, "--no-control-socket"], env=env, cwd=app)
    workers = []
    for name in ("worker", "worker-long"):
        command = [*local_command(services[name]["command"], python), "--hostname", f"{name}-{uuid.uuid4().hex[:8]}@%h"]
        workers.append(processes.start(name, [*AS_USER, *command], env=env, cwd=app))
    beat_command = local_command(services["beat"]["command"], python)
    beat_command = replace_option(beat_command, "--schedule", str(home / "schedule"))
    beat = processes.start("beat", [*AS_USER, *beat_command], env=env, cwd=app)
    logs = logs_of(web, *workers, beat)
    base_url = f"http://127.0.0.1:{port}"
    wait_for(
        lambda: requests.get(f"{base_url}/healthz", timeout=5).status_code == 200,
        timeout=START_TIMEOUT,
        what="web's /healthz",
        logs=logs,
        watch=[web],
    )

    rows = "".join(f"op-{n},Deal {n},Qualification,rep,{100 + n},{'x' * 100}\n" for n in range(ROWS))
    body = "Opportunity ID,Deal,Deal Stage,Sales Agent,Close Value,Remark\n" + rows
    assert len(body) > 256 * 1024
    headers = {"Authorization": f"Bearer {token}", "X-Forwarded-Proto": "https"}
    answer = requests.post(
        f"{base_url}/api/v1/imports/",
        headers=headers,
        data={"kind": "deals"},
        files={"file": ("deals.csv", body.encode(), "text/csv")},
        timeout=REQUEST_TIMEOUT,
    )
    assert answer.status_code == 202, answer.text[:500] + logs()
    job_url = f"{base_url}/api/v1/imports/{answer.json()['id']}/"

    def finished():
        job = requests.get(job_url, headers=headers, timeout=REQUEST_TIMEOUT).json()
        return job if job["status"] in ("succeeded", "failed") else None

    job = wait_for(finished, timeout=240, what="the import to finish", logs=logs, watch=[web, *workers, beat])

    assert (job["status"], job["created_count"]) == ("succeeded", ROWS), job
    assert Deal.objects.filter(owner=rep).count() == ROWS
    saved = app / "media" / ImportJob.objects.get(pk=job["id"]).file.name
    assert saved.stat().st_uid == uid  # web wrote it into the shared folder, as the user
    assert "pipeline.run_import_job" in Path(workers[1].log_path).read_text()  # worker-long ran it
    # Every process runs as the user, and beat keeps its schedule where it may write.
    assert {uid_of(process.pid) for process in (web, *workers, beat)} == {uid}
    time.sleep(2)
    assert all(process.alive() for process in (web, *workers, beat)), logs()
    assert any(path.name.startswith("schedule") for path in home.iterdir()), logs()
