"""Start-up: `status` (10 changes, 100k-file image), `images` and `ps`, whole process,
against `git status` on a git checkout of the same tree with the same 10 changes.

Target (issue 11): each at most 60 ms here and at most 0.3x git status. A row for
`status` parsed by click (`--root STORE status c`) shows what the plain form saves.

These commands are mostly interpreter start-up and imports, so the numbers are
medians of many runs, taken round-robin (one run of every command per round) so
that a busy moment on a shared machine hits all of them alike. Bytecode caches
are on (a private PYTHONPYCACHEPREFIX, also when PYTHONDONTWRITEBYTECODE is set),
as they are for an installed layerctl; one warm-up round fills them first.

Run alone: ``python -m benchmarks.bench_startup [--quick] [--rounds N]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks import corpus
from benchmarks.harness import (
    GIT_CONFIG,
    GIT_ENV,
    REPO_ROOT,
    Options,
    Row,
    copy_tree,
    fresh_dir,
    git,
    git_commit_tree,
    layerctl,
    layerctl_argv,
    layerctl_env,
    print_table,
)

TARGET_S = 0.060
ROUNDS = 31


def _changed_files(top: Path, n: int) -> list[Path]:
    files = sorted(top.rglob("f*.txt"))
    step = max(1, len(files) // n)
    return files[::step][:n]


def _time_once(argv: list[str], env: dict[str, str], cwd: Path, times: list[float]) -> None:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, env=env, cwd=cwd)
    times.append(time.perf_counter() - t0)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[-3:])} exited {proc.returncode}: "
                           f"{proc.stderr.decode(errors='replace').strip()[-200:]}")


def startup_rows(opts: Options, rounds: int | None = None) -> list[Row]:
    n = 10_000 if opts.quick else 100_000
    label = f"synthetic-{n // 1000}k"
    rounds = rounds or (7 if opts.quick else ROUNDS)
    work = fresh_dir(opts.workdir / "startup")
    src = copy_tree(corpus.synthetic(n), work / "src")
    store = work / "store"
    layerctl(store, "import", src, f"{label}:1")
    layerctl(store, "create", "--name", "c", f"{label}:1")
    git_dir = work / "git"
    git_commit_tree(git_dir, src)
    gw = ["--git-dir", str(git_dir), "--work-tree", str(src)]
    git(*gw, "status", "--porcelain")  # git builds and refreshes its index once
    pycache = tempfile.mkdtemp(prefix="layerctl-bench-pyc-")
    env = {**os.environ, **GIT_ENV, **layerctl_env(store), "PYTHONPYCACHEPREFIX": pycache}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    try:
        merged = Path(layerctl(store, "mount", "c").stdout.decode().strip())
        for top in (merged, src):
            for i, p in enumerate(_changed_files(top, 10)):
                with open(p, "ab") as f:
                    f.write(b"changed %d\n" % i)
        status_lines = layerctl(store, "status", "c").stdout.decode().splitlines()
        git_lines = git(*gw, "status", "--porcelain").stdout.decode().splitlines()
        if len(status_lines) != 10 or len(git_lines) != 10:
            raise RuntimeError(f"expected 10 changes, got {len(status_lines)} (layerctl) "
                               f"and {len(git_lines)} (git)")
        commands = {
            "status": layerctl_argv("status", "c"),
            # the same command parsed by click (`--root` is an option): what the plain
            # form (cli/entry.py) saves
            "status-click": layerctl_argv("--root", store, "status", "c"),
            "images": layerctl_argv("images"),
            "ps": layerctl_argv("ps"),
            "python": [sys.executable, "-c", "pass"],
            "git": ["git", *GIT_CONFIG, *gw, "status", "--porcelain"],
        }
        times: dict[str, list[float]] = {k: [] for k in commands}
        for r in range(rounds + 1):
            for name, argv in commands.items():
                _time_once(argv, env, REPO_ROOT, times[name] if r else [])  # round 0: warm-up
        med = {k: statistics.median(v) for k, v in times.items()}
    finally:
        subprocess.run(layerctl_argv("rm", "-f", "c"), env=env, cwd=REPO_ROOT,
                       capture_output=True)
        fresh_dir(Path(pycache))
    fresh_dir(work)
    git_s = med["git"]

    def note(name: str) -> str:  # the minimum says how much of the median is load
        return (f"median of {rounds} (min {min(times[name]) * 1000:.0f} ms, git min "
                f"{min(times['git']) * 1000:.0f} ms); target {TARGET_S * 1000:.0f} ms and 0.3x")

    return [
        Row(f"start-up: status {label}, 10 changes", med["status"], "git status", git_s,
            note("status")),
        Row("start-up: status, click-parsed (--root)", med["status-click"], "git status",
            git_s, note("status-click")),
        Row("start-up: images", med["images"], "git status", git_s, note("images")),
        Row("start-up: ps", med["ps"], "git status", git_s, note("ps")),
        Row("start-up: python -c pass (the floor)", med["python"], "git status", git_s,
            "the interpreter and site alone"),
    ]


def startup_100k(opts: Options) -> list[Row]:
    """status/images/ps start-up against git status (10k-file tree with --quick)."""
    return startup_rows(opts)


BENCHMARKS = [startup_100k]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_startup",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="layerctl-bench-") as tmp:
        opts = Options(workdir=args.workdir or Path(tmp), quick=args.quick)
        print_table(startup_rows(opts, args.rounds), json_path=None)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
