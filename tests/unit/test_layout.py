"""The house rules that keep the code readable: packages depend one way, modules stay small, the README
stays short and the settings table lists exactly the settings there are."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from support.data import PROJECT_DIR

from watchbuy.settings import Settings

#: What each package may import (besides itself and third-party code); docs/ARCHITECTURE.md draws it.
ALLOWED = {
    "watchbuy": set(),
    "models": {"watchbuy"},
    "indexer": {"models", "watchbuy"},
    "service": {"indexer", "models", "watchbuy"},
    "training": {"models", "watchbuy"},
    "evaluation": {"service", "indexer", "models", "training", "watchbuy"},
}
MAX_MODULE_LINES = 400


def imported_packages(path: Path) -> set[str]:
    """Top-level project packages a module imports anywhere in it (function-level imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & set(ALLOWED)


def modules(package: str) -> list[Path]:
    return sorted((PROJECT_DIR / package).rglob("*.py"))


def test_packages_depend_one_way() -> None:
    wrong = [
        f"{path.relative_to(PROJECT_DIR)} imports {sorted(imported_packages(path) - ALLOWED[package] - {package})}"
        for package in ALLOWED
        for path in modules(package)
        if imported_packages(path) - ALLOWED[package] - {package}
    ]
    assert not wrong, wrong


def test_the_service_never_imports_torch_training_or_evaluation() -> None:
    for package in ("models", "indexer", "service"):
        for path in modules(package):
            imported = {alias for alias in re.findall(r"^\s*(?:from|import) (\w+)", path.read_text(), re.M)}
            assert not imported & {"torch", "training", "evaluation"}, path


def test_no_module_is_over_400_lines() -> None:
    long = [
        f"{path.relative_to(PROJECT_DIR)}: {n}"
        for package in [*ALLOWED, "benchmarks", "scripts", "loadtests"]
        for path in (PROJECT_DIR / package).rglob("*.py")
        if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    ]
    assert not long, long


def test_readme_is_short_and_shows_the_two_commands() -> None:
    readme = (PROJECT_DIR / "README.md").read_text()
    assert len(readme.splitlines()) <= 160
    assert "make demo" in readme and "make test" in readme


def test_settings_table_lists_every_setting_and_nothing_else() -> None:
    table = (PROJECT_DIR / "docs" / "SETTINGS.md").read_text()
    documented = set(re.findall(r"^\| `WATCHBUY_([A-Z0-9_]+)`", table, re.M))
    documented |= set(re.findall(r"^\| `WATCHBUY_[A-Z0-9_]+` / `WATCHBUY_([A-Z0-9_]+)`", table, re.M))  # host / port
    fields = {name.upper() for name in Settings.model_fields}
    assert documented == fields, (sorted(fields - documented), sorted(documented - fields))
