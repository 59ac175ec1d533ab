"""Path history benchmarks: blame of one path on a 50-layer image, against
`git log -- rootfs/PATH` on the same store (the layer commits are git commits).

Each callable takes harness.Options and returns a list of harness.Row.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from benchmarks import corpus
from benchmarks.harness import (
    REPO_ROOT,
    Options,
    Row,
    fresh_dir,
    git,
    layerctl,
    layerctl_env,
    measure_layerctl,
    timeit,
)

LAYERS = 50
PATH = "etc/apt/sources.list.d/app.list"  # depth 4, changed every 5th layer

# Run in a subprocess against the store (setup, not timed): 49 layers on the base,
# each adding a file under /usr/share/bench, every 5th also rewriting PATH.
_BUILD = r"""
import sys
from layerctl.images import parse_name, resolve, set_tag
from layerctl.importer import commit_root
from layerctl.store.edit import TreeEditor
from layerctl.store.layers import read_layer
from layerctl.store.meta import DIR, FILE, Meta
from layerctl.store.objects import BLOB
from layerctl.store.repo import Store

store = Store(sys.argv[1])
top = resolve(store, "bench:base")
for i in range(1, int(sys.argv[2])):
    parent = read_layer(store, top)
    editor = TreeEditor(store, parent.root)
    with store.pack_writer() as w:
        def put(path, data):
            editor.set_file(path, Meta(FILE, 0o644, 0, 0, i * 10**9, len(data)), w.add(BLOB, data))
        if i == 1:
            editor.set_dir(b"usr/share/bench", Meta(DIR, 0o755))
        put(b"usr/share/bench/f%d" % i, b"layer %d\n" % i)
        if i % 5 == 0:
            put(sys.argv[3].encode(), b"deb http://example.invalid/%d stable main\n" % i)
        root = editor.write(w)
        w.finish()
    store.landed()
    top = commit_root(store, root, parent.root, parent.id, parent.config, "bench <b@x>",
                      f"layer {i}", f"RUN step {i}", 0)
set_tag(store, parse_name("bench:latest"), top)
store.close()
print(top)
"""


def blame_50_layers(opts: Options) -> list[Row]:
    """`layerctl blame IMAGE PATH` (whole process) on Debian minbase + 49 layers."""
    op = f"blame one path, {LAYERS}-layer image"
    peer = "git log --format=%H -- rootfs/PATH"
    try:
        source = corpus.debian_minbase()
    except corpus.CorpusUnavailable as e:
        return [Row(op, None, peer, None, f"corpus unavailable: {e}")]
    work = opts.workdir / "insight"
    store = fresh_dir(work / "store")
    store.mkdir(parents=True)
    try:
        layerctl(store, "import", source, "bench:base")
    except Exception as e:  # noqa: BLE001 - reported in the row
        return [Row(op, None, peer, None, f"layerctl failed: {e}")]
    proc = subprocess.run([sys.executable, "-c", _BUILD, str(store), str(LAYERS), PATH],
                          capture_output=True, text=True, cwd=REPO_ROOT,
                          env={**os.environ, **layerctl_env(store)})
    if proc.returncode != 0:
        return [Row(op, None, peer, None, f"building layers failed: {proc.stderr.strip()[:300]}")]
    top = proc.stdout.strip()
    git_s = timeit(lambda: git("--git-dir", store, "log", "--format=%H", top, "--",
                               f"rootfs/{PATH}"), opts.repeat)
    blame_s, note = measure_layerctl(lambda: layerctl(store, "blame", "bench", PATH),
                                     opts.repeat)
    fresh_dir(work)
    target = "target < 0.3 s" + (f"; {note}" if note else "")
    return [Row(op, blame_s, peer, git_s, target)]


BENCHMARKS = [blame_50_layers]


if __name__ == "__main__":  # pragma: no cover - handy for a single row
    from benchmarks.harness import print_table

    print_table(blame_50_layers(Options(Path("/var/tmp/layerctl-bench-insight"))), None)
