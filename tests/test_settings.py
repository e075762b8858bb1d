"""Production settings refuse unsafe defaults."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_check(**env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.production", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("secret_key", ["", "django-insecure-" + "x" * 60, "short"])
def test_production_refuses_to_start_without_a_real_secret_key(secret_key):
    result = run_check(SECRET_KEY=secret_key)

    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_production_settings_pass_the_deploy_checklist():
    result = run_check(SECRET_KEY="a-random-production-secret-" + "q7Zk2LmP9x" * 5)

    assert result.returncode == 0, result.stdout + result.stderr
