"""Interchange benchmarks: save and load of the Debian minbase image against podman.

Rows (targets from the issue: at most 1.0x podman):
- save: `layerctl save -o FILE debian:1` (docker-archive, uncompressed) vs
  `podman save -o FILE` of the same image (loaded into podman from layerctl's
  archive, so the layers are byte for byte the same);
- load: `layerctl load -i ARCHIVE` into a fresh store vs `podman load -i ARCHIVE`
  into an emptied private podman storage, ARCHIVE being podman's own save;
- load, every layer present: the same load again (both find the layers);
- save after load: `layerctl save` of the image loaded from podman's archive, whose
  overlay layer dir is on disk (as podman's layer is), so the files are read from it
  (each checked against its blob id) rather than inflated, vs `podman save` again.
podman runs on a private storage under the work dir, never the machine's.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from benchmarks import corpus
from benchmarks.harness import (
    CommandFailed,
    Options,
    Row,
    fresh_dir,
    layerctl,
    layerctl_unavailable,
    timeit,
)
from benchmarks.podman import PrivatePodman

IMAGE = "localhost/debian:1"


def _unavailable() -> str | None:
    if shutil.which("podman") is None:
        return "podman not installed"
    if os.geteuid() != 0:
        return "needs root (podman storage, overlay)"
    return layerctl_unavailable()


def _time(fn, repeat: int, setup=None) -> tuple[float | None, str]:  # noqa: ANN001
    try:
        return timeit(fn, repeat, setup), ""
    except CommandFailed as e:
        return None, f"failed: {e}"


def interchange_debian(opts: Options) -> list[Row]:
    """Debian minbase (~200 MB, one layer): save and load, layerctl vs podman."""
    names = ["save debian-minbase", "load debian-minbase", "load, every layer present",
             "save debian-minbase after load (layer dir)"]
    source, reason = corpus.debian_or_reason(_unavailable())
    if reason:
        return [Row(n, None, "podman", None, reason) for n in names]
    work = fresh_dir(opts.workdir / "interchange")
    work.mkdir(parents=True)
    podman = PrivatePodman(work / "podman")
    try:
        return _rows(opts, work, podman, source)
    finally:
        podman.close()
        fresh_dir(work)


def _rows(opts: Options, work: Path, podman: PrivatePodman, source: Path) -> list[Row]:
    store = work / "store"
    store.mkdir()
    layerctl(store, "import", source, IMAGE)
    ours = work / "layerctl.tar"
    theirs = work / "podman.tar"
    layerctl(store, "save", "-q", "-o", ours, IMAGE)
    podman("load", "-q", "-i", ours)

    def drop(path: Path) -> None:
        if path.exists():
            path.unlink()

    save_l, note_l = _time(lambda: layerctl(store, "save", "-q", "-o", ours, IMAGE),
                           opts.repeat, lambda: drop(ours))
    save_p, note_p = _time(lambda: podman("save", "-q", "-o", theirs, IMAGE), opts.repeat,
                           lambda: drop(theirs))
    rows = [Row("save debian-minbase (docker-archive)", save_l, "podman save", save_p,
                note_l or note_p)]

    # load: both read podman's own archive of the image
    target = work / "target"

    def new_store() -> None:
        fresh_dir(target).mkdir()

    load_l, note_l = _time(lambda: layerctl(target, "load", "-q", "-i", theirs), opts.repeat,
                           new_store)
    load_p, note_p = _time(lambda: podman("load", "-q", "-i", theirs), opts.repeat,
                           podman.reset)
    rows.append(Row("load debian-minbase (podman's archive)", load_l, "podman load", load_p,
                    note_l or note_p))
    again_l, note_l = _time(lambda: layerctl(target, "load", "-q", "-i", theirs), opts.repeat)
    again_p, note_p = _time(lambda: podman("load", "-q", "-i", theirs), opts.repeat)
    rows.append(Row("load, every layer present", again_l, "podman load", again_p,
                    note_l or note_p))

    # the loaded image has its layer dir (root, overlay): save reads the files there
    dir_l, note_l = _time(lambda: layerctl(target, "save", "-q", "-o", ours, IMAGE),
                          opts.repeat, lambda: drop(ours))
    dir_p, note_p = _time(lambda: podman("save", "-q", "-o", theirs, IMAGE), opts.repeat,
                          lambda: drop(theirs))
    rows.append(Row("save debian-minbase after load (layer dir)", dir_l, "podman save",
                    dir_p, note_l or note_p))
    return rows


BENCHMARKS = [interchange_debian]
