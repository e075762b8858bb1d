"""`make lock`'s second lock: the runtime dependencies only (`requirements-runtime.lock`, what the Docker image runs).

`python -m tools.runtime_lock` prints the subset of `requirements.lock` that `[project] dependencies` of
pyproject.toml need, their extras and their own dependencies followed through the metadata of the packages installed
in the running interpreter (the lock's virtualenv, which holds exactly `requirements.lock`). Versions come from
`requirements.lock`, so the two locks never disagree; the embedded servers, Node.js, the test and load-test tools are
left out because nothing that the image runs imports them.
"""

from __future__ import annotations

import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
HEADER = (
    "# The runtime dependencies only (the Docker image), pinned as in requirements.lock; regenerate both with "
    "`make lock`."
)


def _pins(lock_text: str) -> dict[str, str]:
    """The lock's `name==version` lines by canonical name."""
    pins = {}
    for line in lock_text.splitlines():
        if line and not line.startswith("#") and "==" in line:
            pins[canonicalize_name(line.split("==", 1)[0])] = line.strip()
    return pins


def runtime_closure(requirements: list[str]) -> set[str]:
    """The canonical names of `requirements` and everything they need, with their extras, in this environment."""
    needed: set[str] = set()
    pending = [(Requirement(text), ()) for text in requirements]
    seen: set[tuple[str, tuple[str, ...]]] = set()
    while pending:
        requirement, _ = pending.pop()
        name = canonicalize_name(requirement.name)
        extras = tuple(sorted(requirement.extras))
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        needed.add(name)
        for text in metadata.requires(requirement.name) or []:
            dependency = Requirement(text)
            environments = [{"extra": extra} for extra in extras] or [{"extra": ""}]
            if dependency.marker is None or any(dependency.marker.evaluate(env) for env in environments):
                pending.append((dependency, ()))
    return needed


def runtime_lock(pyproject_text: str, lock_text: str) -> str:
    """The text of requirements-runtime.lock for these pyproject.toml and requirements.lock texts."""
    dependencies = tomllib.loads(pyproject_text)["project"]["dependencies"]
    pins = _pins(lock_text)
    closure = runtime_closure(dependencies)
    missing = sorted(closure - set(pins))
    if missing:
        raise SystemExit(f"not in requirements.lock (run `make lock`): {', '.join(missing)}")
    return "\n".join([HEADER, *(pins[name] for name in sorted(closure))]) + "\n"


def main() -> int:
    sys.stdout.write(runtime_lock((ROOT / "pyproject.toml").read_text(), (ROOT / "requirements.lock").read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
