"""Static checks of the library's structure: import direction, public surface, no global seeding."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "ruquant"
MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py")
SERVICE_PACKAGES = {"fastapi", "celery", "redis", "sqlalchemy", "kombu", "api", "worker", "service", "localhub"}


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_library_imports_no_service_code(path: Path) -> None:
    assert not _imported_roots(path) & SERVICE_PACKAGES


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_declares_all(path: Path) -> None:
    tree = ast.parse(path.read_text())
    names = {target.id for node in tree.body if isinstance(node, ast.Assign) for target in node.targets if isinstance(target, ast.Name)}
    assert "__all__" in names


def _called_names(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name):
                names.add(func.id)
            elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
                names.add(f"{func.value.id}.{func.attr}")
    return names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_global_seed_or_print(path: Path) -> None:
    called = _called_names(path)
    assert "torch.manual_seed" not in called
    assert "print" not in called


def test_config_module_is_torch_free() -> None:
    config_source = (PACKAGE / "config.py").read_text()
    assert "torch" not in _imported_roots(PACKAGE / "config.py")
    assert "import torch" not in config_source
