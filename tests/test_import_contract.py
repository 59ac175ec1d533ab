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


# -- start-up: what the everyday read commands import --------------------------------

# A command imports only what it needs (issue 11): these are the modules that cost
# `status`, `images` and `ps` milliseconds they do not use. dulwich stays out because
# store/packs.py and store/refread.py read objects and refs; hashlib (OpenSSL) only
# `images` needs, for the image id.
STARTUP_FORBIDDEN = ("textual", "rich", "dulwich", "tarfile", "gzip", "isal", "logging",
                     "layerctl.tui", "layerctl.oci", "http", "email", "ssl", "socket",
                     "asyncio", "importlib.metadata", "pkg_resources")
NO_HASHING = ("hashlib", "_hashlib")


def imported_by(cli, *args: str) -> set[str]:
    """The modules a `layerctl ARGS` process imports (python -X importtime's list)."""
    proc = cli(*args, env={"PYTHONPROFILEIMPORTTIME": "1"})
    names = {line.split("|")[2].strip() for line in proc.stderr.splitlines()
             if line.startswith("import time:") and "[us]" not in line}
    assert "layerctl.cli.main" in names  # the list is complete enough to judge
    return names


def _hits(names: set[str], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names if n in forbidden or n.startswith(
        tuple(f + "." for f in forbidden)))


def test_read_commands_import_only_what_they_need(cli, tmp_path):
    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "etc" / "hostname").write_text("box\n")
    cli("import", rootfs, "img:1")
    cli("create", "--driver", "vfs", "--name", "c", "img:1")
    for args, forbidden in ((("status", "c"), STARTUP_FORBIDDEN + NO_HASHING),
                            (("ps", "-a"), STARTUP_FORBIDDEN + NO_HASHING),
                            (("images",), STARTUP_FORBIDDEN)):
        names = imported_by(cli, *args)
        assert not _hits(names, forbidden), f"`layerctl {' '.join(args)}` imports " \
            f"{_hits(names, forbidden)}"
    assert "layerctl.containers" in imported_by(cli, "status", "c")  # it did run the command
