"""The core imports neither Textual nor click: only layerctl/cli and layerctl/tui may.

Checked statically (every import statement, including ones inside functions), so a
lazy import deep in a rarely used path cannot slip through.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.paths import REPO_ROOT

PACKAGE = REPO_ROOT / "layerctl"
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
    assert PACKAGE / "presentation" / "browse.py" in core_modules()


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


# -- the layer order: each folder imports only the layers below it ---------------------

# Lowest first. A module may import its own layer and any layer before it (imports
# inside functions included): docs/design-notes.md "Where things live" explains each.
LAYERS: list[tuple[str, set[str]]] = [
    ("base", {"errors", "words", "faults", "atomic", "beneath", "hashing", "heap", "identity",
              "lazy", "record"}),
    ("store", {"store"}),
    ("format", {"changeset", "compress", "patch"}),
    ("images", {"images", "importer", "remotes", "tarsplit_check"}),
    ("runtime", {"runtime"}),
    # containers/ in three: what a driver stands on, the drivers, the operations
    ("container parts", {"containers.state", "containers.view", "containers.changes",
                         "containers.links", "containers.rootless", "containers.overlayfs",
                         "containers.layerdirs", "containers.lanes", "containers.layerfiles",
                         "containers.layerbuild", "containers.mirror",
                         "containers.layerstack", "containers.configedit"}),
    ("container drivers", {"containers.drivers"}),
    ("containers", {"containers"}),
    ("oci", {"oci"}),
    ("insight", {"insight"}),
    ("history editing", {"merge", "rewrite", "undo"}),
    ("uses", {"prune", "demo", "fsck"}),
    ("presentation", {"presentation"}),
    ("fronts", {"cli", "tui", "__main__"}),
]


# Imports inside a function that go against the order or close a cycle, each with
# why it is there; nothing else may (a module-level one never). Each is a debt.
LAZY_EXCEPTIONS: dict[tuple[str, str], str] = {
    ("layerctl.images", "layerctl.containers.state"):
        "NAME@{n} also names a container's base, whose ref is found by the container's name",
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _layer_of(module: str) -> int | None:
    """The layer of the longest member naming `module` or a package holding it
    (a member "containers.drivers" takes that package before "containers")."""
    parts = module.split(".")[1:]
    for n in range(len(parts), 0, -1):
        name = ".".join(parts[:n])
        found = next((i for i, (_n, members) in enumerate(LAYERS) if name in members), None)
        if found is not None:
            return found
    return None


def _resolve(name: str) -> str:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def _edges(module: str, lazy_exceptions: bool = True) -> set[str]:
    """The layerctl modules `module` imports (a `from PKG import sub` counts as sub),
    less the LAZY_EXCEPTIONS (unless `lazy_exceptions` is False)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top_level = {id(n) for n in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(_resolve(a.name) for a in node.names if a.name.startswith("layerctl."))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                source = base + ("." + node.module if node.module else "")
            elif node.module and node.module.startswith("layerctl"):
                source = node.module
            else:
                continue
            subs = [f"{source}.{a.name}" for a in node.names if f"{source}.{a.name}" in MODULES]
            found = subs if len(subs) == len(node.names) else [*subs, _resolve(source)]
            if lazy_exceptions and id(node) not in top_level:
                found = [t for t in found if (module, t) not in LAZY_EXCEPTIONS]
            out.update(found)
    out.discard(module)
    out.discard("layerctl")
    return out


def test_lazy_exceptions_are_real_and_lazy():
    for (module, target), why in LAZY_EXCEPTIONS.items():
        assert why and target in _edges(module, lazy_exceptions=False), (module, target)
        assert target not in _edges(module), f"{module} imports {target} at module level"


def test_every_module_has_a_layer():
    lost = [m for m in MODULES if m != "layerctl" and _layer_of(m) is None]
    assert not lost, f"put these in a layer of LAYERS: {lost}"


def test_no_module_imports_a_layer_above_its_own():
    bad = []
    for module in MODULES:
        mine = _layer_of(module)
        if mine is None:
            continue
        for target in _edges(module):
            theirs = _layer_of(target)
            if theirs is not None and theirs > mine:
                bad.append(f"{module} ({LAYERS[mine][0]}) imports {target} "
                           f"({LAYERS[theirs][0]})")
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    graph = {m: _edges(m) for m in MODULES}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_the_checks_see_a_violation():
    # the order check is not vacuous: store importing the front ends would be caught
    assert _layer_of("layerctl.store.repo") < _layer_of("layerctl.cli.main")
    assert "layerctl.store.layers" in _edges("layerctl.images")
    # and inside containers/: a driver reaching up into the operations would be too
    assert _layer_of("layerctl.containers.drivers.vfs") < _layer_of(
        "layerctl.containers.lifecycle")
    assert _layer_of("layerctl.containers.state") < _layer_of("layerctl.containers.drivers")

# -- module size: a long module says why it is long -----------------------------------

MAX_LINES = 500


def test_long_modules_say_why_in_their_docstring():
    """Issue 11: no module over ~500 lines without a reason in its docstring (one that
    mentions the limit, e.g. "Over 500 lines: ..."), so a long module is a decision."""
    silent = []
    for name, path in sorted(MODULES.items()):
        text = path.read_text(encoding="utf-8")
        lines = text.count("\n")
        if lines <= MAX_LINES:
            continue
        doc = ast.get_docstring(ast.parse(text)) or ""
        if f"{MAX_LINES} lines" not in doc:
            silent.append(f"{name} ({lines} lines)")
    assert not silent, "split these, or say in the docstring why not: " + ", ".join(silent)


# -- start-up: what the everyday read commands import --------------------------------

# A command imports only what it needs (issue 11): these are the modules that cost
# `status`, `images` and `ps` milliseconds they do not use. dulwich stays out because
# store/packs.py and store/refread.py read objects and refs; hashlib (OpenSSL) only
# `images` needs, for the image id.
STARTUP_FORBIDDEN = ("textual", "rich", "dulwich", "tarfile", "gzip", "isal", "logging",
                     "layerctl.tui", "layerctl.oci", "http", "email", "ssl", "socket",
                     "asyncio", "importlib.metadata", "pkg_resources")
NO_HASHING = ("hashlib", "_hashlib")
NO_CLICK = ("click", "layerctl.cli.main")


def imported_by(cli, *args: str) -> set[str]:
    """The modules a `layerctl ARGS` process imports (python -X importtime's list)."""
    proc = cli(*args, env={"PYTHONPROFILEIMPORTTIME": "1"})
    names = {line.split("|")[2].strip() for line in proc.stderr.splitlines()
             if line.startswith("import time:") and "[us]" not in line}
    assert "layerctl.cli.entry" in names  # the list is complete enough to judge
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
    # The plain forms run without click (cli/entry.py); with an option click parses.
    for args, forbidden in ((("status", "c"), STARTUP_FORBIDDEN + NO_HASHING + NO_CLICK),
                            (("ps",), STARTUP_FORBIDDEN + NO_HASHING + NO_CLICK),
                            (("ps", "-a"), STARTUP_FORBIDDEN + NO_HASHING),
                            (("images",), STARTUP_FORBIDDEN + NO_CLICK),
                            (("images", "-q"), STARTUP_FORBIDDEN)):
        names = imported_by(cli, *args)
        assert not _hits(names, forbidden), f"`layerctl {' '.join(args)}` imports " \
            f"{_hits(names, forbidden)}"
    assert "layerctl.containers" in imported_by(cli, "status", "c")  # it did run the command


def _imported_layerctl_names(path: Path, module: str) -> list[tuple[int, str, str]]:
    """(line, module, name or "") of every import of layerctl in `path`, lazy ones too."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name.split(".")[0] == "layerctl":
                out += [(node.lineno, name, a.name) for a in node.names]
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name, "") for a in node.names
                    if a.name.split(".")[0] == "layerctl"]
    return out


def test_every_import_of_layerctl_names_something_that_exists():
    """Imports inside functions run only on some paths: one that names a module moved
    away (as a merge can leave) must fail here, not in a user's command."""
    import importlib
    import importlib.util

    missing = []
    for module, path in sorted(MODULES.items()):
        for line, name, attr in _imported_layerctl_names(path, module):
            where = f"{path.relative_to(PACKAGE.parent)}:{line}"
            if importlib.util.find_spec(name) is None:
                missing.append(f"{where}: {name}")
                continue
            if not attr:
                continue
            target = importlib.import_module(name)
            if hasattr(target, "__path__") and importlib.util.find_spec(f"{name}.{attr}"):
                continue  # a submodule
            if not hasattr(target, attr) and not hasattr(target, "__getattr__"):
                missing.append(f"{where}: {name}.{attr}")
    assert not missing
