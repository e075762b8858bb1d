"""Tools sit beside the product: they import the apps, and no app imports them (STYLE.md, second floor)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# config/bench and config/loadtest are tools on their way to tools/; they may import the generators.
PRODUCT = ["accounts", "pipeline", "forecasting", "config"]
NOT_PRODUCT = [ROOT / "config" / "bench", ROOT / "config" / "loadtest"]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_no_app_imports_tools():
    offenders = [
        f"{path.relative_to(ROOT)} imports {module}"
        for package in PRODUCT
        for path in sorted((ROOT / package).rglob("*.py"))
        if not any(path.is_relative_to(folder) for folder in NOT_PRODUCT)
        for module in sorted(imported_modules(path))
        if module == "tools" or module.startswith("tools.")
    ]
    assert offenders == []


def test_the_generators_commands_come_from_tools():
    from django.core.management import get_commands

    commands = get_commands()
    assert commands["seed_demo"] == "tools"
    assert commands["generate_dataset"] == "tools"
