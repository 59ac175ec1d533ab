"""Nothing is lost: stash push+pop, reset+undo and a logged ref move, against git's
stash and `git update-ref` (which writes a reflog too) on the same tree.

Each callable takes harness.Options and returns a list of harness.Row. Overlay
mounts need root; without it the rows say so.
"""

from __future__ import annotations

import os
from pathlib import Path

from benchmarks import corpus
from benchmarks.bench_containers import _changed_files
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


def undo_1k(opts: Options) -> list[Row]:
    """Synthetic 1k-file image, 10 changed files."""
    label = "synthetic-1k"
    if os.geteuid() != 0:
        return [Row(f"{label}: undo", None, "git", None, "overlay mounts need root")]
    work = fresh_dir(opts.workdir / f"undo-{label}")
    store = work / "store"
    src = copy_tree(corpus.synthetic(1_000), work / "src")
    layerctl(store, "import", src, "img:1")
    layerctl(store, "create", "--name", "c", "img:1")
    merged = Path(layerctl(store, "mount", "c").stdout.decode().strip())
    git_dir = work / "git"
    git_commit_tree(git_dir, src)
    gw = ["--git-dir", git_dir, "--work-tree", src]
    git(*gw, "status", "--porcelain")
    rows = []
    try:
        for top in (merged, src):
            for i, p in enumerate(_changed_files(top, 10)):
                with open(p, "ab") as f:
                    f.write(b"changed %d\n" % i)
        git_stash = timeit(lambda: (git(*gw, "stash", "push", "-q"),
                                    git(*gw, "stash", "pop", "-q")), opts.repeat)
        stash = timeit(lambda: (layerctl(store, "stash", "push", "c"),
                                layerctl(store, "stash", "pop", "c")), opts.repeat)
        rows.append(Row(f"stash push+pop {label}, 10 changed files", stash,
                        "git stash push+pop", git_stash))
        undo = timeit(lambda: (layerctl(store, "reset", "c"), layerctl(store, "undo")),
                      opts.repeat)
        rows.append(Row(f"reset+undo {label}, 10 changed files", undo,
                        "git stash push+pop", git_stash))
        layer = layerctl(store, "inspect", "-f", "{{.Layerctl.Layer}}", "img:1").stdout.decode()
        head = git(*gw, "rev-parse", "HEAD").stdout.decode().strip()
        tag = timeit(lambda: layerctl(store, "tag", layer.strip(), "img:2"), opts.repeat)
        update = timeit(lambda: git(*gw, "update-ref", "-m", "x", "--create-reflog",
                                    "refs/tags/t", head), opts.repeat)
        rows.append(Row("tag (one logged ref move)", tag, "git update-ref -m", update))
    finally:
        layerctl(store, "rm", "-f", "c")
    fresh_dir(work)
    return rows


BENCHMARKS = [undo_1k]
