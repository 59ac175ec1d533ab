"""Container benchmarks: create+mount, status and commit of a few changes, against git.

Each callable takes harness.Options and returns a list of harness.Row. Overlay
mounts need root; without it the rows say so.
"""

from __future__ import annotations

import itertools
import os
import subprocess
from pathlib import Path

from benchmarks import corpus
from benchmarks.harness import (
    Options,
    Row,
    copy_tree,
    fresh_dir,
    git,
    git_commit_tree,
    layerctl,
    timeit,
)

TARGET = "target (0.3 s)"


def _changed_files(top: Path, n: int) -> list[Path]:
    files = sorted(p for p in top.rglob("f*.txt"))
    step = max(1, len(files) // n)
    return files[::step][:n]


def _container_rows(opts: Options, label: str, source: Path) -> list[Row]:
    if os.geteuid() != 0:
        return [Row(f"{label}: containers", None, "git", None, "overlay mounts need root")]
    work = fresh_dir(opts.workdir / f"containers-{label}")
    store = work / "store"
    src = copy_tree(source, work / "src")
    layerctl(store, "import", src, f"{label}:1")
    layerctl(store, "create", "--name", "warm", f"{label}:1")  # extracts the lower-dir cache
    names = (f"c{i}" for i in itertools.count())

    def create_mount() -> None:
        name = next(names)
        layerctl(store, "create", "--name", name, f"{label}:1")
        layerctl(store, "mount", name)

    rows = [Row(f"create+mount {label} (cached image, 2 CLI calls)",
                timeit(create_mount, opts.repeat), TARGET, 0.3)]

    merged = Path(layerctl(store, "mount", "warm").stdout.decode().strip())
    git_dir = work / "git"
    git_commit_tree(git_dir, src)
    gw = ["--git-dir", git_dir, "--work-tree", src]
    git(*gw, "status", "--porcelain")  # let git build and refresh its index
    try:
        for top in (merged, src):
            for i, p in enumerate(_changed_files(top, 10)):
                with open(p, "ab") as f:
                    f.write(b"changed %d\n" % i)
        git_s = timeit(lambda: git(*gw, "status", "--porcelain"), opts.repeat)
        status_s = timeit(lambda: layerctl(store, "status", "warm"), opts.repeat)
        out = layerctl(store, "status", "warm").stdout.decode().splitlines()
        rows.append(Row(f"status {label}, 10 changed files", status_s, "git status", git_s,
                        f"{len(out)} lines"))
        # commit of one changed file
        commits = itertools.count()

        def one_change() -> None:
            n = next(commits)
            for top in (merged, src):
                p = _changed_files(top, 1)[0]
                with open(p, "ab") as f:
                    f.write(b"commit %d\n" % n)

        # commit everything pending first so that each timed commit has one file
        layerctl(store, "commit", "-a", "bench", "warm")
        git(*gw, "add", "-A")
        git(*gw, "commit", "-q", "-m", "x")
        commit_s = timeit(lambda: layerctl(store, "commit", "-a", "bench", "warm"),
                          opts.repeat, one_change)
        git_commit_s = timeit(
            lambda: (git(*gw, "add", "-A"), git(*gw, "commit", "-q", "-m", "x")),
            opts.repeat, one_change)
        rows.append(Row(f"commit {label}, 1 changed file", commit_s,
                        "git add -A && git commit", git_commit_s))
    finally:
        for name in ["warm", *(f"c{i}" for i in range(opts.repeat + 2))]:
            subprocess.run(["umount", os.path.join(store, "containers")], capture_output=True)
            try:
                layerctl(store, "rm", "-f", name)
            except Exception:  # noqa: BLE001 - cleanup only
                pass
    fresh_dir(work)
    return rows


def containers_1k(opts: Options) -> list[Row]:
    """Synthetic 1k-file image."""
    return _container_rows(opts, "synthetic-1k", corpus.synthetic(1_000))


def containers_100k(opts: Options) -> list[Row]:
    """Synthetic 100k-file image (10k with --quick)."""
    n = 10_000 if opts.quick else 100_000
    return _container_rows(opts, f"synthetic-{n // 1000}k", corpus.synthetic(n))


BENCHMARKS = [containers_1k, containers_100k]
