"""Tiny helpers shared by the benchmark modules: timing, rows, table/JSON
output, and running layerctl and git as subprocesses."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import TextIO

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_PATH = BENCH_DIR / "results.json"


# --- timing ----------------------------------------------------------------------


def timeit(
    fn: Callable[[], object], repeat: int = 3, setup: Callable[[], object] | None = None
) -> float:
    """Best wall-clock seconds of ``repeat`` calls of ``fn``.

    ``setup`` (if given) runs before every call, outside the timed part.
    """
    best = float("inf")
    for _ in range(max(1, repeat)):
        if setup is not None:
            setup()
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


# --- rows and output ----------------------------------------------------------------


@dataclass
class Options:
    """What run.py passes to every benchmark callable."""

    workdir: Path
    quick: bool = False
    repeat: int = 3


@dataclass
class Row:
    """One comparison: layerctl's time for ``operation`` against a peer tool's.

    A time of None means "not measured"; ``note`` says why.
    """

    operation: str
    layerctl_s: float | None
    peer_name: str
    peer_s: float | None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        """layerctl / peer: below 1 means layerctl is faster."""
        if self.layerctl_s is None or not self.peer_s:
            return None
        return self.layerctl_s / self.peer_s


def _fmt_s(v: float | None) -> str:
    if v is None:
        return "n/a"
    if v < 1:
        return f"{v * 1000:.1f} ms"
    return f"{v:.2f} s"


def print_table(
    rows: Sequence[Row],
    json_path: Path | None = RESULTS_PATH,
    out: TextIO = sys.stdout,
) -> None:
    """Print an aligned table of ``rows`` and write them as JSON to ``json_path``."""
    header = ("operation", "layerctl", "peer", "peer time", "ratio", "note")
    table = [header] + [
        (
            r.operation,
            _fmt_s(r.layerctl_s),
            r.peer_name,
            _fmt_s(r.peer_s),
            "n/a" if r.ratio is None else f"{r.ratio:.2f}x",
            r.note,
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(header) - 1)]
    for n, line in enumerate(table):
        cells = [
            c.ljust(w) if i in (0, 2) else c.rjust(w)
            for i, (c, w) in enumerate(zip(line[:-1], widths, strict=True))
        ]
        print("  ".join(cells + [line[-1]]).rstrip(), file=out)
        if n == 0:
            print("  ".join("-" * w for w in widths), file=out)
    if json_path is not None:
        write_json(rows, json_path)
        print(f"\nresults written to {json_path}", file=out)


def write_json(rows: Iterable[Row], path: Path) -> None:
    data = {
        "generated": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "host": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "git": git_version(),
        },
        "rows": [{**asdict(r), "ratio": r.ratio} for r in rows],
    }
    path.write_text(json.dumps(data, indent=2) + "\n")


# --- subprocesses --------------------------------------------------------------------


class CommandFailed(RuntimeError):
    """A benchmarked command exited non-zero; the message ends with its stderr tail."""


def run(
    argv: Sequence[str | os.PathLike],
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
) -> subprocess.CompletedProcess:
    """Run a command quietly (stdin /dev/null); raise CommandFailed on non-zero exit."""
    proc = subprocess.run(
        [os.fspath(a) for a in argv],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=None if env is None else {**os.environ, **env},
        cwd=cwd,
    )
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise CommandFailed(
            f"{' '.join(map(str, argv[:4]))} exited {proc.returncode}: " + " | ".join(tail)
        )
    return proc


def layerctl_argv(*args: str | os.PathLike) -> list[str]:
    return [sys.executable, "-m", "layerctl", *(os.fspath(a) for a in args)]


def layerctl_env(store: str | os.PathLike) -> dict[str, str]:
    """Environment for running the working tree's layerctl against ``store``."""
    pythonpath = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    return {"LAYERCTL_ROOT": os.fspath(store), "PYTHONPATH": pythonpath}


def layerctl(store: str | os.PathLike, *args: str | os.PathLike) -> subprocess.CompletedProcess:
    """Run ``python -m layerctl ARGS`` with LAYERCTL_ROOT=store."""
    return run(layerctl_argv(*args), env=layerctl_env(store), cwd=REPO_ROOT)


@cache
def prepare_interpreter() -> None:
    """Make start-up what a user gets: an installed package has its bytecode compiled,
    so the tree is compiled once here and PYTHONDONTWRITEBYTECODE (set in some shells
    and CI images) is dropped; with it every run recompiled each module (~25 ms here),
    which no user pays."""
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO_ROOT / "layerctl")],
                   stdin=subprocess.DEVNULL, capture_output=True)


@cache
def layerctl_unavailable() -> str | None:
    """None if ``python -m layerctl --help`` works, else a one-line reason."""
    prepare_interpreter()
    with tempfile.TemporaryDirectory(prefix="layerctl-bench-probe-") as store:
        proc = subprocess.run(
            layerctl_argv("--help"),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env={**os.environ, **layerctl_env(store)},
            cwd=REPO_ROOT,
        )
    if proc.returncode == 0:
        return None
    lines = proc.stderr.strip().splitlines()
    return "layerctl unavailable" + (f" ({lines[-1]})" if lines else "")


GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_DATE": "2000-01-01T00:00:00Z",
    "GIT_COMMITTER_DATE": "2000-01-01T00:00:00Z",
}
GIT_CONFIG = [
    "-c", "user.name=bench", "-c", "user.email=bench@example.invalid",
    "-c", "gc.auto=0", "-c", "core.autocrlf=false",
]  # fmt: skip


def git(*args: str | os.PathLike) -> subprocess.CompletedProcess:
    return run(["git", *GIT_CONFIG, *args], env=GIT_ENV)


def git_commit_tree(git_dir: Path, work_tree: Path) -> None:
    """The git peer of an import: init a bare repo, add everything, commit."""
    git("init", "-q", "--bare", git_dir)
    gw = ["--git-dir", git_dir, "--work-tree", work_tree]
    git(*gw, "add", "-A")
    git(*gw, "commit", "-q", "-m", "x")


@cache
def git_version() -> str | None:
    if shutil.which("git") is None:
        return None
    return subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.strip()


def fresh_dir(path: Path) -> Path:
    """Remove ``path`` if present and return it (not created)."""
    if path.exists() or path.is_symlink():
        shutil.rmtree(path)
    return path


def copy_tree(src: Path, dst: Path) -> Path:
    """``cp -a`` src to dst (replacing dst); for use outside timed sections."""
    fresh_dir(dst).parent.mkdir(parents=True, exist_ok=True)
    run(["cp", "-a", src, dst])
    return dst


def measure_layerctl(fn: Callable[[], object], repeat: int,
                     setup: Callable[[], object] | None = None) -> tuple[float | None, str]:
    """(best seconds, "") or (None, reason) when layerctl is missing or fails."""
    reason = layerctl_unavailable()
    if reason:
        return None, reason
    try:
        return timeit(fn, repeat, setup), ""
    except CommandFailed as e:
        return None, f"layerctl failed: {e}"
