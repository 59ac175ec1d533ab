"""The core imports neither Textual nor click: only layerctl/cli and layerctl/tui may.

Checked statically (every import statement, including ones inside functions), so a
lazy import deep in a rarely used path cannot slip through.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "layerctl"
FRONT_ENDS = ("cli", "tui")
FORBIDDEN = ("textual", "click", "rich")


def core_modules() -> list[Path]:
    return sorted(
        p for p in PACKAGE.rglob("*.py")
        if p.relative_to(PACKAGE).parts[0] not in FRONT_ENDS
    )


def imported_names(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant)):
            names.append(str(node.args[0].value))
    return names


def test_there_is_a_core_to_check():
    assert len(core_modules()) > 10
    assert PACKAGE / "browse.py" in core_modules()


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_core_module_imports_no_ui_library(path):
    bad = [n for n in imported_names(path) if n.split(".")[0] in FORBIDDEN]
    assert not bad, f"{path.relative_to(PACKAGE.parent)} imports {bad}: the core must not"


def test_core_modules_import_the_core_only():
    """No core module reaches up into the front ends either (`python -m layerctl`,
    the launcher, is the one module that must)."""
    for path in core_modules():
        if path.name == "__main__.py":
            continue
        bad = [n for n in imported_names(path)
               if n.startswith(("layerctl.cli", "layerctl.tui"))]
        assert not bad, f"{path.relative_to(PACKAGE.parent)} imports {bad}"
