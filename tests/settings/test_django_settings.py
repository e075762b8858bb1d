"""The Django settings modules (SPEC §5): the embedded servers belong to local and test settings only.

(The rest of tests/settings/ is about the admin's /settings/ pages; tests/test_settings.py holds the deploy checks.)
"""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
REAL_KEY = secrets.token_urlsafe(64)
SERVERS = {"DATABASE_URL": "postgresql://crm@db.invalid:5432/crm", "REDIS_URL": "redis://redis.invalid:6379/0"}


def run_python(data_dir: Path, code: str, **env: str | None) -> subprocess.CompletedProcess:
    """`code` in a fresh interpreter whose embedded servers would live in `data_dir`; None unsets a variable."""
    environment = {**os.environ, "CRM_DATA_DIR": str(data_dir)}
    for name, value in env.items():
        if value is None:
            environment.pop(name, None)
        else:
            environment[name] = value
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120
    )


IMPORT_PRODUCTION = "import config.settings.production"


@pytest.mark.parametrize("missing", ["DATABASE_URL", "REDIS_URL", "SECRET_KEY"])
def test_production_settings_refuse_to_start_naming_what_is_missing(tmp_path, missing):
    env = {**SERVERS, "SECRET_KEY": REAL_KEY, missing: None}

    result = run_python(tmp_path / "data", IMPORT_PRODUCTION, **env)

    assert result.returncode != 0
    assert "ImproperlyConfigured: Production settings refuse to start" in result.stderr
    named = {name for name in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY") if f"- {name} " in result.stderr}
    assert named == {missing}, result.stderr
    # No embedded server was started for it (they would live in the data folder).
    assert not (tmp_path / "data").exists()


def test_production_settings_name_every_missing_variable_at_once(tmp_path):
    result = run_python(tmp_path / "data", IMPORT_PRODUCTION, DATABASE_URL=None, REDIS_URL=None, SECRET_KEY="short")

    assert result.returncode != 0
    for line in (
        "- DATABASE_URL is not set",
        "- REDIS_URL is not set",
        "- SECRET_KEY must be set to a random value of at least 50 characters",
    ):
        assert line in result.stderr
    assert not (tmp_path / "data").exists()


def test_production_settings_take_the_servers_from_the_environment_and_start_nothing(tmp_path):
    code = f"{IMPORT_PRODUCTION} as s; print(s.DATABASES['default']['HOST'], s.CELERY_BROKER_URL)"

    result = run_python(tmp_path / "data", code, **SERVERS, SECRET_KEY=REAL_KEY)

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["db.invalid", "redis://redis.invalid:6379/0"]
    assert not (tmp_path / "data").exists()


def test_the_shared_settings_alone_refuse_to_choose_the_servers(tmp_path):
    result = run_python(tmp_path / "data", "import config.settings.base", DATABASE_URL=None, REDIS_URL=None)

    assert "DATABASE_URL and REDIS_URL must be set" in result.stderr
    assert not (tmp_path / "data").exists()


@pytest.mark.slow
def test_a_local_command_that_starts_the_embedded_servers_says_so_and_how_to_stop_them(tmp_path):
    data_dir = tmp_path / "data"
    local = {"DJANGO_SETTINGS_MODULE": "config.settings.local", "DATABASE_URL": None, "REDIS_URL": None}
    check = "import sys; sys.argv = ['manage.py', 'check']; import manage; manage.main()"
    stop = "from config import embedded; embedded.main(['embedded', 'stop'])"
    try:
        first = run_python(data_dir, check, **local)
        second = run_python(data_dir, check, **local)
    finally:
        run_python(data_dir, stop)

    assert first.returncode == 0, first.stderr
    assert (
        f"Started the embedded PostgreSQL and Valkey under {data_dir}; they keep running after this command "
        "(`make services-stop` stops them)." in first.stderr
    )
    assert "System check identified no issues" in first.stdout  # stdout stays the command's own
    assert "Started" not in first.stdout
    # The second command found them running and reused them: nothing started, nothing to say.
    assert second.returncode == 0, second.stderr
    assert "Started the embedded" not in second.stderr
    status = run_python(data_dir, "from config import embedded; embedded.main(['embedded', 'status'])")
    assert status.stdout.split() == ["postgres:", "stopped", "valkey:", "stopped"]
