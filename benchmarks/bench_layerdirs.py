"""Issue 12: the iterate loop (commit one changed file, create and mount a container
from the new image) and a first container on a freshly loaded image, against
podman doing the same on its own overlay storage, in the same run.

Each callable takes harness.Options and returns a list of harness.Row. Needs
root (overlay mounts) and podman; without them the rows say so.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from pathlib import Path

from benchmarks import corpus
from benchmarks.harness import Options, Row, copy_tree, fresh_dir, layerctl, timeit
from benchmarks.podman import PrivatePodman


def _unavailable() -> str | None:
    if os.geteuid() != 0:
        return "overlay mounts need root"
    if shutil.which("podman") is None:
        return "podman not installed"
    return None


def _append(path: Path, n: int) -> None:
    with open(path, "ab") as f:
        f.write(b"change %d\n" % n)


def _some_file(top: Path) -> Path:
    """A regular file of the tree, the same relative path in every copy of it."""
    for rel in ("etc/passwd", "d00/d00/f00.txt"):
        if (top / rel).is_file():
            return Path(rel)
    raise RuntimeError(f"no known file under {top}")


def _loop_rows(opts: Options, label: str, source: Path) -> list[Row]:
    why = _unavailable()
    if why:
        return [Row(f"commit+create+mount {label}", None, "podman", None, why)]
    work = fresh_dir(opts.workdir / f"layerdirs-{label}")
    store = work / "store"
    src = copy_tree(source, work / "src")
    rel = _some_file(src)
    tar = work / "rootfs.tar"
    subprocess.run(["tar", "-C", str(src), "--numeric-owner", "--xattrs", "-cf", str(tar),
                    "."], check=True)
    podman = PrivatePodman(work / "podman")
    try:
        # layerctl: a working container on the image, its layer dirs built (untimed)
        layerctl(store, "import", src, "img:0")
        layerctl(store, "create", "--name", "w", "img:0")
        merged = Path(layerctl(store, "mount", "w").stdout.decode().strip())
        podman("import", "-q", str(tar), "localhost/img:0")
        podman("create", "--name", "w", "localhost/img:0", "true")
        p_merged = Path(podman("mount", "w").stdout.decode().strip())

        ours, theirs = itertools.count(1), itertools.count(1)

        def l_cycle() -> None:
            n = next(ours)
            layerctl(store, "commit", "-a", "bench", "w", f"img:{n}")
            layerctl(store, "create", "--name", f"c{n}", f"img:{n}")
            layerctl(store, "mount", f"c{n}")

        def p_cycle() -> None:
            n = next(theirs)
            podman("commit", "-q", "w", f"localhost/img:{n}")
            podman("create", "--name", f"c{n}", f"localhost/img:{n}", "true")
            podman("mount", f"c{n}")

        changes = itertools.count()
        l_s = timeit(l_cycle, opts.repeat, lambda: _append(merged / rel, next(changes)))
        p_s = timeit(p_cycle, opts.repeat, lambda: _append(p_merged / rel, next(changes)))
        rows = [Row(f"commit 1 file+create+mount {label}", l_s,
                    "podman commit+create+mount", p_s)]

        # a first container on a freshly loaded image: no layer dir exists yet
        archive = work / "img.tar"
        layerctl(store, "save", "-o", archive, "img:0")
        loads = itertools.count()

        def l_fresh() -> None:
            n = next(loads)
            out = fresh_dir(work / f"fresh-store-{n}")
            layerctl(out, "load", "-q", "-i", archive)
            layerctl(out, "create", "--name", "f", "img:0")
            layerctl(out, "mount", "f")

        def l_reset() -> None:
            for old in work.glob("fresh-store-*"):
                subprocess.run(["umount", "-R", str(old / "containers")], capture_output=True)
                for m in old.glob("containers/*/merged"):
                    subprocess.run(["umount", str(m)], capture_output=True)
                shutil.rmtree(old, ignore_errors=True)

        fresh = PrivatePodman(work / "podman-fresh")
        try:
            def p_fresh() -> None:
                fresh("load", "-q", "-i", str(archive))
                fresh("create", "--name", "f", "localhost/img:0", "true")
                fresh("mount", "f")

            def p_reset() -> None:
                subprocess.run([*fresh.base, "rm", "-f", "-a"], capture_output=True)
                fresh.reset()

            lf = timeit(l_fresh, opts.repeat, l_reset)
            l_reset()
            pf = timeit(p_fresh, opts.repeat, p_reset)
        finally:
            fresh.close()
        rows.append(Row(f"load+create+mount {label} (no layer dir yet)", lf,
                        "podman load+create+mount", pf))
        return rows
    finally:
        for m in sorted(store.glob("containers/*/merged")):
            subprocess.run(["umount", str(m)], capture_output=True)
        subprocess.run([*podman.base, "rm", "-f", "-a"], capture_output=True)
        podman.close()
        fresh_dir(work)


def layerdirs_debian(opts: Options) -> list[Row]:
    """Debian minbase (~200 MB)."""
    try:
        source = corpus.debian_minbase()
    except corpus.CorpusUnavailable as e:
        return [Row("commit+create+mount debian", None, "podman", None, str(e))]
    return _loop_rows(opts, "debian", source)


def layerdirs_1k(opts: Options) -> list[Row]:
    """Synthetic 1k-file image."""
    return _loop_rows(opts, "synthetic-1k", corpus.synthetic(1_000))


def layerdirs_100k(opts: Options) -> list[Row]:
    """Synthetic 100k-file image (10k with --quick): flat in image size against 1k."""
    n = 10_000 if opts.quick else 100_000
    return _loop_rows(opts, f"synthetic-{n // 1000}k", corpus.synthetic(n))


BENCHMARKS = [layerdirs_debian, layerdirs_1k, layerdirs_100k]
