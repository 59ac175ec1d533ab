"""Store benchmarks: importing trees and CLI startup, against the git CLI.

Each callable takes harness.Options and returns a list of harness.Row.
"""

from __future__ import annotations

import itertools
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
    measure_layerctl,
    timeit,
)

GIT_PEER = "git init+add+commit"


def _import_rows(opts: Options, label: str, source: Path) -> list[Row]:
    """Fresh import and identical re-import of ``source`` vs git add+commit.

    The tree is copied with ``cp -a`` outside the timed part; both tools read
    the same copy (warm page cache for both).
    """
    work = opts.workdir / label
    src = copy_tree(source, work / "src")
    git_dir = work / "git"
    store = work / "store"

    git_s = timeit(lambda: git_commit_tree(git_dir, src), opts.repeat, lambda: fresh_dir(git_dir))

    def new_store() -> None:
        fresh_dir(store).mkdir(parents=True)

    first_s, note = measure_layerctl(
        lambda: layerctl(store, "import", src, f"{label}:1"), opts.repeat, new_store
    )
    rows = [Row(f"import {label}", first_s, GIT_PEER, git_s, note)]

    # Re-import of the identical tree into the store now holding {label}:1,
    # under a new tag each time. Peer: the same first-time git commit.
    if first_s is None:
        re_s, re_note = None, note
    else:
        tags = itertools.count(2)
        re_s, re_note = measure_layerctl(
            lambda: layerctl(store, "import", src, f"{label}:{next(tags)}"), opts.repeat
        )
    rows.append(Row(f"re-import {label} (identical)", re_s, GIT_PEER, git_s, re_note))
    fresh_dir(work)
    return rows


def import_debian(opts: Options) -> list[Row]:
    """Debian minbase rootfs (~6,800 entries, ~200 MB): import and re-import."""
    try:
        source = corpus.debian_minbase()
    except corpus.CorpusUnavailable as e:
        note = f"corpus unavailable: {e}"
        return [
            Row("import debian-minbase", None, GIT_PEER, None, note),
            Row("re-import debian-minbase (identical)", None, GIT_PEER, None, note),
        ]
    return _import_rows(opts, "debian-minbase", source)


def import_synthetic(opts: Options) -> list[Row]:
    """Synthetic tree of 100k small files (1k with --quick): import and re-import."""
    label = "1k" if opts.quick else "100k"
    return _import_rows(opts, f"synthetic-{label}", corpus.synthetic(corpus.SIZES[label]))


def startup(opts: Options) -> list[Row]:
    """Process start-up cost: `layerctl --help` and `layerctl images` (empty store)."""
    repeat = max(opts.repeat, 3 if opts.quick else 10)
    store = fresh_dir(opts.workdir / "startup-store")
    store.mkdir(parents=True)
    git_s = timeit(lambda: git("--help"), repeat)
    rows = []
    for args in (["--help"], ["images"]):
        s, note = measure_layerctl(lambda args=args: layerctl(store, *args), repeat)
        rows.append(Row(f"startup: layerctl {' '.join(args)}", s, "git --help", git_s, note))
    fresh_dir(store)
    return rows


BENCHMARKS = [startup, import_debian, import_synthetic]
