"""Shared pytest fixtures and markers for layerctl's tests.

Layout
    unit/          one module in-process: no mounts, servers or containers
    integration/   the CLI, TUI and core end to end: real overlay mounts, runc, registry, git
    compat/        what podman, skopeo and umoci make of layerctl's output, and it of theirs
    faults/        hostile containers, tars, archives, registries and remotes; kill -9 at
                   fault points
    tests/*.py     helpers, imported one way (``from tests.X import ...``)

Fixtures
    debian_rootfs  (session) Path of a cached Debian bookworm minbase rootfs,
                   built with debootstrap on first use. Treat it as read-only:
                   copy it (``cp -a``) before changing anything.
    store_root     Fresh empty store directory; LAYERCTL_ROOT points at it.
    store          The Store at store_root; its containers' mounts released afterwards.
    cli            ``cli(*args, input=None, check=True, env=None)`` runs
                   ``python -m layerctl`` against ``store_root``.
    needs_root     Skips the test unless running as root.
    needs_tool     ``needs_tool("skopeo")`` skips unless the tool is on PATH
                   and returns its path.
    cli_deb        ``cli`` over a store holding the Debian corpus as image "deb".
    podman         podman on private storage, removed afterwards.
    config_dir     credential files (layerctl's and Docker's) under tmp_path.
    registry       docker-registry on 127.0.0.1 (registryhelpers.serve for more).
    fresh, image   a second empty Store; two layers with every entry kind in `store`.
    git_daemon     ``(url, path)`` of a bare repository served by `git daemon`
                   on 127.0.0.1 (push enabled), stopped afterwards.

Markers (same effect, declarative)
    @pytest.mark.needs_root
    @pytest.mark.needs_tool("podman", "skopeo")

A session-wide safety net lazily unmounts anything still mounted under
pytest's temporary directories when the session ends, and reports it as an
error: tests must unmount what they mount; this only catches leaks.
"""

from __future__ import annotations

import fcntl
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.githelpers import GIT_ENV, git
from tests.paths import REPO_ROOT
from tests.registryhelpers import free_port

# Hypothesis: the same examples on every run, and no time limits. Its default 200 ms
# deadline per example and its "too slow" health check fail a property test when a
# loaded machine pauses the process, and a random seed makes a CI run find (or miss) a
# case no other run replays. `--hypothesis-profile=explore` searches anew, printing
# the seed of what it finds.
_NO_TIMING = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", derandomize=True, database=None, **_NO_TIMING)
settings.register_profile("explore", print_blob=True, **_NO_TIMING)
settings.load_profile("ci")

DEFAULT_CORPUS_DIR = "/var/cache/layerctl-corpus"
DEBIAN_SUITE = "bookworm"
DEBIAN_ROOTFS_NAME = "debian-minbase"


# --- markers -----------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "needs_root: skip unless running as root (euid 0)")
    config.addinivalue_line(
        "markers", "needs_tool(*names): skip unless every named executable is on PATH"
    )


def _skip_unless_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")


def _skip_unless_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed")
    return path


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Turn the markers into skip markers so the report points at the test.
    for item in items:
        reasons = []
        if item.get_closest_marker("needs_root") is not None and os.geteuid() != 0:
            reasons.append("needs root")
        for marker in item.iter_markers("needs_tool"):
            reasons += [f"{n} not installed" for n in marker.args if shutil.which(n) is None]
        if reasons:
            item.add_marker(pytest.mark.skip(reason="; ".join(reasons)))


@pytest.fixture
def needs_root() -> None:
    """Skip the requesting test with reason "needs root" unless euid is 0."""
    _skip_unless_root()


@pytest.fixture
def needs_tool() -> Callable[[str], str]:
    """``needs_tool(name)`` skips with "<name> not installed" or returns the path."""
    return _skip_unless_tool


# --- corpus --------------------------------------------------------------------


def corpus_dir() -> Path:
    return Path(os.environ.get("LAYERCTL_CORPUS_DIR") or DEFAULT_CORPUS_DIR)


def _mounts_under(prefix: Path) -> list[str]:
    """Mount points at or below ``prefix`` (deepest first)."""
    base = os.path.realpath(prefix)
    found = []
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            lines = f.readlines()
    except OSError:
        return []
    for line in lines:
        fields = line.split(" ")
        if len(fields) < 5:
            continue
        point = _unescape_mountinfo(fields[4])
        if point == base or point.startswith(base.rstrip("/") + "/"):
            found.append(point)
    return sorted(set(found), key=lambda p: (-p.count("/"), p))


def _unescape_mountinfo(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal.
    out, i = [], 0
    while i < len(field):
        code = field[i + 1 : i + 4]
        if field[i] == "\\" and len(code) == 3 and all(c in "01234567" for c in code):
            out.append(chr(int(code, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def _lazy_unmount(points: list[str]) -> list[str]:
    """``umount -l`` each point; return the ones that could not be unmounted."""
    failed = []
    for point in points:
        r = subprocess.run(["umount", "-l", point], capture_output=True, text=True)
        if r.returncode != 0:
            failed.append(f"{point} ({r.stderr.strip()})")
    return failed


def _discard_tree(path: Path) -> None:
    if not path.exists():
        return
    _lazy_unmount(_mounts_under(path))  # never rm -rf into a mounted /proc or /dev
    shutil.rmtree(path, ignore_errors=True)


def build_debian_rootfs(dest: Path) -> None:
    """Build ``dest`` with debootstrap via a ``.tmp`` sibling and an atomic rename.

    Serialised with an flock on ``<dest>.lock`` so parallel test workers and
    ``python -m benchmarks.corpus`` never build it twice at once. Raises
    RuntimeError with the tail of the debootstrap log on failure.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest.with_name(dest.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if dest.is_dir():
            return
        tmp = dest.with_name(dest.name + ".tmp")
        log = dest.with_name(dest.name + ".log")
        _discard_tree(tmp)
        cmd = ["debootstrap", "--variant=minbase", DEBIAN_SUITE, str(tmp)]
        mirror = os.environ.get("LAYERCTL_DEBIAN_MIRROR")
        if mirror:
            cmd.append(mirror)
        with open(log, "w") as out:
            rc = subprocess.run(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            ).returncode
        if rc != 0:
            _discard_tree(tmp)
            tail = "".join(log.read_text(errors="replace").splitlines(True)[-15:])
            raise RuntimeError(f"{' '.join(cmd)} failed with exit code {rc} (log {log}):\n{tail}")
        leaked = _mounts_under(tmp)
        if leaked:
            _lazy_unmount(leaked)
        os.rename(tmp, dest)


@pytest.fixture(scope="session")
def debian_rootfs() -> Path:
    """Cached Debian bookworm minbase rootfs (~200 MB, ~6,800 entries). Read-only!"""
    dest = corpus_dir() / DEBIAN_ROOTFS_NAME
    if dest.is_dir():
        return dest
    if os.geteuid() != 0:
        pytest.skip(f"Debian corpus {dest} missing and building it with debootstrap needs root")
    if shutil.which("debootstrap") is None:
        pytest.skip(f"Debian corpus {dest} missing and debootstrap not installed")
    try:
        build_debian_rootfs(dest)
    except (OSError, RuntimeError) as e:
        pytest.skip(f"building the Debian corpus {dest} failed: {e}")
    return dest


# --- store and CLI -------------------------------------------------------------


@pytest.fixture
def store_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty store directory; LAYERCTL_ROOT points at it for this test."""
    root = tmp_path / "store"
    root.mkdir()
    monkeypatch.setenv("LAYERCTL_ROOT", str(root))
    return root


@pytest.fixture
def store(store_root: Path) -> Iterator[object]:
    """The test's Store (at `store_root`, where `cli` works too); the mounts its
    containers left are released and it is closed afterwards."""
    from layerctl.store.repo import Store
    from tests.layerhelpers import release_containers

    s = Store(str(store_root))
    yield s
    release_containers(s)


CliRunner = Callable[..., subprocess.CompletedProcess]


@pytest.fixture
def cli(store_root: Path) -> CliRunner:
    """Run ``python -m layerctl ARGS`` with LAYERCTL_ROOT=store_root.

    ``cli(*args, input=None, check=True, env=None, cwd=None, timeout=300)``
    returns the CompletedProcess (text mode, stdout and stderr captured).
    ``env`` overrides variables of the current environment (a value of None
    removes the variable). stdin is /dev/null unless ``input`` is given. With
    ``check=True`` a non-zero exit fails the test, showing stdout and stderr.
    """

    def run(
        *args: object,
        input: str | None = None,
        check: bool = True,
        env: Mapping[str, str | None] | None = None,
        cwd: str | os.PathLike | None = None,
        timeout: float = 300,
    ) -> subprocess.CompletedProcess:
        from tests.layerhelpers import cli_env

        full_env = cli_env(store_root, REPO_ROOT)
        for key, value in (env or {}).items():
            if value is None:
                full_env.pop(key, None)
            else:
                full_env[key] = value
        argv = [
            sys.executable,
            "-m",
            "layerctl",
            *(os.fspath(a) if isinstance(a, os.PathLike) else str(a) for a in args),
        ]
        proc = subprocess.run(
            argv,
            input=input,
            stdin=subprocess.DEVNULL if input is None else None,
            capture_output=True,
            text=True,
            env=full_env,
            cwd=cwd,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            pytest.fail(
                f"`layerctl {' '.join(argv[3:])}` exited with {proc.returncode}\n"
                f"--- stdout ---\n{proc.stdout}--- stderr ---\n{proc.stderr}",
                pytrace=False,
            )
        return proc

    return run


# --- leaked-mount safety net -----------------------------------------------------


def _pytest_tmp_roots(factory: pytest.TempPathFactory) -> list[Path]:
    """Temp dirs to check: this session's base temp dir and, when it is pytest's
    default ``pytest-of-<user>/pytest-N``, every sibling ``pytest-M`` that no
    live pytest process holds (pytest writes its pid to ``pytest-M/.lock`` and
    removes it at exit). Directories of concurrently running sessions are left
    alone, so two test runs on one machine cannot unmount each other's mounts.
    """
    from layerctl.store.debris import pid_alive

    base = factory.getbasetemp()
    roots = [base]
    if not base.parent.name.startswith("pytest-of-"):
        return roots
    for sibling in sorted(base.parent.glob("pytest-*")):
        if sibling == base or not sibling.is_dir():
            continue
        try:
            pid = int((sibling / ".lock").read_text().strip() or "0")
        except (OSError, ValueError):
            pid = 0
        if pid <= 0 or not pid_alive(pid):
            roots.append(sibling)
    return roots


@pytest.fixture(scope="session", autouse=True)
def _unmount_leaked_mounts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    yield
    leaked = [p for root in _pytest_tmp_roots(tmp_path_factory) for p in _mounts_under(root)]
    if not leaked:
        return
    failed = _lazy_unmount(leaked)
    msg = "mounts leaked by tests (lazily unmounted now; tests must clean up):\n  " + "\n  ".join(
        leaked
    )
    if failed:
        msg += "\ncould not unmount:\n  " + "\n  ".join(failed)
    pytest.fail(msg, pytrace=False)


# --- containers with processes ------------------------------------------------------


@pytest.fixture
def cli_deb(cli, debian_rootfs: Path, store_root: Path):
    """`cli` over a store holding the Debian corpus as image "deb", for tests that run
    processes; every container is stopped and removed afterwards, even on failure."""
    from layerctl import runtime
    from layerctl.errors import LayerctlError

    if os.geteuid() != 0:
        pytest.skip("needs root")
    try:
        runtime.find_runtime()
    except LayerctlError:
        pytest.skip("no OCI runtime (crun or runc) installed")
    cli("import", debian_rootfs, "deb")
    yield cli
    from layerctl.containers import list_containers
    from layerctl.store.repo import Store

    store = Store(str(store_root))
    for c in list_containers(store):
        runtime.forget(store, c.id, force=True)
        cli("rm", "-f", c.id, check=False)
    store.close()


@pytest.fixture
def podman(tmp_path_factory, needs_tool, monkeypatch):
    """podman on private storage (overlay) under a temporary dir, removed afterwards;
    LAYERCTL_PODMAN points layerctl's own podman calls at it."""
    from tests.interchange_helpers import Podman

    needs_tool("podman")
    p = Podman(tmp_path_factory.mktemp("podman"))
    monkeypatch.setenv("LAYERCTL_PODMAN", shlex.join(p.argv))
    try:
        yield p
    finally:
        p.cleanup()


@pytest.fixture
def git_daemon(tmp_path):
    """`git daemon` on 127.0.0.1 serving tmp_path/served (receive-pack enabled)."""
    if shutil.which("git") is None:
        pytest.skip("git not installed")
    base = tmp_path / "served"
    base.mkdir()
    git("init", "-q", "--bare", base / "images.git")
    # free_port() names a port that was free: another process may bind it before the
    # daemon does (the daemon then exits at once), so an early exit means another port.
    for _ in range(5):
        port = free_port()
        proc = subprocess.Popen(
            [
                "git", "daemon", "--export-all", "--enable=receive-pack", "--reuseaddr",
                f"--base-path={base}", f"--port={port}", "--listen=127.0.0.1", str(base),
            ],
            env=GIT_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            if _serving(proc, port, timeout=60):
                yield f"git://127.0.0.1:{port}/images.git", base / "images.git"
                return
        finally:
            _stop(proc)
    pytest.fail("git daemon did not start")


def _serving(proc: subprocess.Popen, port: int, timeout: float) -> bool:
    """True once `proc` accepts connections on `port`; False if it exited first."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail(f"git daemon did not answer on port {port} in {timeout} s")
            time.sleep(0.05)
    return False


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[object]:
    """A second, empty Store: where an image lands after a round trip."""
    from layerctl.store.repo import Store

    s = Store(str(tmp_path / "fresh"))
    yield s
    s.close()


@pytest.fixture
def image(store, tmp_path: Path) -> list[str]:
    """Two layers in `store` holding every entry kind (interchange_helpers.make_tree)."""
    from tests.interchange_helpers import make_tree, two_layer_image

    return two_layer_image(store, make_tree(tmp_path / "src"))


@pytest.fixture
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """layerctl's and Docker's credential files in tmp (never the user's)."""
    d = tmp_path / "config"
    monkeypatch.setenv("LAYERCTL_CONFIG_DIR", str(d))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    monkeypatch.delenv("LAYERCTL_CA_FILE", raising=False)
    return d


@pytest.fixture
def registry(tmp_path: Path, config_dir: Path, needs_tool) -> Iterator[object]:
    """Debian's docker-registry on 127.0.0.1 (plain http), stopped afterwards."""
    from tests.registryhelpers import serve

    needs_tool("docker-registry")
    with serve(tmp_path / "registry") as reg:
        yield reg
