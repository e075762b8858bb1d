"""Imports go one way: accounts <- pipeline <- forecasting <- tools, with config's settings and API plumbing below
every app and its URL root above them all (issue 14, item 1).

Every `import` and `from ... import` of accounts/, pipeline/, forecasting/ and config/ is read with `ast`, also those
inside functions (a deferred import is still a dependency), and migrations too (they name other apps' models by
string, so they pass). An import of a layer above the file's own fails with file:line and the module.

config/ is settings, the API base classes (`config.api`, `config.rest`), the Celery app and the URL root: all but the
last import no app, so any app may use them. The one module of config that may import the apps is `config/urls.py`,
because routing a page means naming its view; `wsgi.py`, `asgi.py` and `celery.py` reach the apps through settings
(`ROOT_URLCONF`, `INSTALLED_APPS`, `autodiscover_tasks`) and need no import, so they are not on the list. No app may
import `config.urls` in turn: it sits above them all.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Each package, and the packages above it that it may not import.
FORBIDDEN = {
    "accounts": {"pipeline", "forecasting", "tools", "tests"},
    "pipeline": {"forecasting", "tools", "tests"},
    "forecasting": {"tools", "tests"},
    "config": {"accounts", "pipeline", "forecasting", "tools", "tests"},
}

# The modules of config that wire the apps together (see the module docstring): they may import any app, no app
# may import them.
ENTRY_POINTS = {"config/urls.py": "config.urls"}


def _module_name(relative: str) -> str:
    parts = relative.removesuffix(".py").split("/")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, relative: str) -> list[tuple[int, str, list[str]]]:
    """(line, module, names) for every import in `source`, the file at `relative`: relative imports made absolute,
    and for `from package import name` the names as `package.name` (which may be modules, e.g. config.urls)."""
    package = _module_name(relative).split(".")
    if not relative.endswith("__init__.py"):
        package = package[:-1]
    found = []
    for node in ast.walk(ast.parse(source, filename=relative)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.append((node.lineno, module, [f"{module}.{alias.name}" for alias in node.names]))
    return found


def upward_imports(source: str, relative: str) -> list[str]:
    """The imports of the file at `relative` that go up, as "file:line imports module"."""
    if relative in ENTRY_POINTS:
        return []
    forbidden = FORBIDDEN[relative.split("/")[0]]
    problems = []
    for line, module, names in imported_modules(source, relative):
        if module.split(".")[0] in forbidden:
            problems.append(f"{relative}:{line} imports {module}")
        problems += [f"{relative}:{line} imports {name}" for name in [module, *names] if name in ENTRY_POINTS.values()]
    return sorted(problems, key=lambda problem: int(problem.split(":")[1].split()[0]))


def _checked_files() -> list[str]:
    files = []
    for package in FORBIDDEN:
        for path in sorted((ROOT / package).rglob("*.py")):
            files.append(path.relative_to(ROOT).as_posix())
    return files


def test_no_module_imports_a_layer_above_its_own():
    files = _checked_files()
    problems = [problem for relative in files for problem in upward_imports((ROOT / relative).read_text(), relative)]
    assert not problems, "Imports that go up (accounts <- pipeline <- forecasting <- tools):\n" + "\n".join(problems)
    # The walk found the apps (a wrong ROOT would pass on no files at all).
    assert {relative.split("/")[0] for relative in files} == set(FORBIDDEN)
    assert "pipeline/migrations/0001_initial.py" in files


def test_an_upward_import_inside_a_function_is_caught():
    source = "from accounts.models import User\n\n\ndef later():\n    from forecasting import tasks\n"
    assert upward_imports(source, "pipeline/views/board.py") == ["pipeline/views/board.py:5 imports forecasting"]


def test_a_relative_import_is_read_from_its_package():
    assert imported_modules("from ..selectors import visible_deals\n", "pipeline/views/deals.py") == [
        (1, "pipeline.selectors", ["pipeline.selectors.visible_deals"])
    ]
    assert upward_imports("from .. import urls\n", "pipeline/api/views.py") == []
    assert upward_imports("from config import urls\n", "accounts/admin.py") == [
        "accounts/admin.py:1 imports config.urls"
    ]


def test_config_may_import_the_apps_only_from_its_url_root():
    assert upward_imports("from pipeline import views\n", "config/urls.py") == []
    assert upward_imports("from pipeline.models import Deal\n", "config/api.py") == [
        "config/api.py:1 imports pipeline.models"
    ]
