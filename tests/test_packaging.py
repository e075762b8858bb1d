"""The project as a package (`pip install .`), its licence, and `make help`."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["accounts", "config", "forecasting", "pipeline", "tools"]


def test_make_help_lists_every_target_with_what_it_does():
    phony = re.search(r"^\.PHONY: (.+)$", (ROOT / "Makefile").read_text(), re.MULTILINE).group(1).split()

    result = subprocess.run(["make", "--no-print-directory", "help"], cwd=ROOT, capture_output=True, text=True)

    assert result.returncode == 0, result.stderr
    listed = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip() and line[2] != " "}
    assert sorted(listed) == sorted(phony)
    # Each with its text, the README's two commands first after help itself.
    assert listed["run"].split(None, 1)[1].startswith("set up everything and run the app")
    assert list(listed)[:3] == ["help", "run", "test"]


def test_the_licence_pyproject_names_is_the_licence_file():
    assert 'license = { text = "MIT" }' in (ROOT / "pyproject.toml").read_text()
    assert (ROOT / "LICENSE").read_text().startswith("MIT License\n")


@pytest.mark.slow
def test_pip_install_installs_the_apps_and_nothing_else(tmp_path):
    # From the files git tracks, as a fresh clone has them: the build writes into the tree it builds.
    source, target = tmp_path / "source", tmp_path / "target"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in files.decode().split("\0"):
        if name and (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes((ROOT / name).read_bytes())

    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(path.name for path in target.iterdir() if not path.name.endswith(".dist-info")) == PACKAGES
    assert (target / "pipeline" / "migrations" / "0001_initial.py").exists()
    assert (target / "tools" / "bench" / "plain_metrics.sql").exists()  # data files the code reads
    (dist_info,) = target.glob("pipeline_crm-*.dist-info")
    # Where the metadata keeps it depends on the setuptools version (licenses/ since PEP 639).
    (licence,) = dist_info.rglob("LICENSE")
    assert licence.read_text() == (ROOT / "LICENSE").read_text()
    # The installed code is importable from where it was installed.
    code = "import sys; sys.path.insert(0, sys.argv[1]); import config.embedded, pipeline; print(pipeline.__file__)"
    imported = subprocess.run(
        [sys.executable, "-c", code, str(target)], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert imported.stdout.strip() == str(target / "pipeline" / "__init__.py")
