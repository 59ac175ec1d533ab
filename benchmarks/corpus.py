"""Benchmark corpora, built once and cached.

- Debian bookworm minbase rootfs (debootstrap, needs root and network), at
  ``$LAYERCTL_CORPUS_DIR/debian-minbase``, default
  ``/var/cache/layerctl-corpus/debian-minbase``: the same path and lock as the
  ``debian_rootfs`` test fixture in tests/conftest.py, so either builds it for
  the other.
- Synthetic trees of N small text files (``synthetic-1k``, ``synthetic-100k``)
  at ``$LAYERCTL_CORPUS_DIR`` or, when unset, ``benchmarks/.corpus/``.
  Deterministic: same seed and N give byte-identical content, modes and
  mtimes. Layout ``dXX/dYY/fZZ.txt``, 100 files per leaf directory.

Every corpus is built into a ``.tmp`` sibling and renamed into place, so an
existing directory is always complete. ``python -m benchmarks.corpus
[debian|1k|100k|all]`` builds them ahead of time (e.g. in CI).
"""

from __future__ import annotations

import argparse
import fcntl
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

DEFAULT_SYSTEM_CORPUS = Path("/var/cache/layerctl-corpus")
LOCAL_CORPUS = Path(__file__).resolve().parent / ".corpus"
DEBIAN_SUITE = "bookworm"
SYNTHETIC_SEED = 20240501
SYNTHETIC_MTIME_NS = 1_700_000_000_000_000_000
SIZES = {"1k": 1_000, "100k": 100_000}


class CorpusUnavailable(RuntimeError):
    """The corpus is not cached and cannot be built here; str() says why."""


def debian_path() -> Path:
    base = os.environ.get("LAYERCTL_CORPUS_DIR") or DEFAULT_SYSTEM_CORPUS
    return Path(base) / "debian-minbase"


def synthetic_path(n_files: int) -> Path:
    base = os.environ.get("LAYERCTL_CORPUS_DIR") or LOCAL_CORPUS
    label = next((k for k, v in SIZES.items() if v == n_files), str(n_files))
    return Path(base) / f"synthetic-{label}"


def _mounts_under(path: Path) -> list[str]:
    base = os.path.realpath(path).rstrip("/") + "/"
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        points = [line.split(" ")[4] for line in f]
    return sorted((p for p in points if p.startswith(base)), key=len, reverse=True)


def _discard(path: Path) -> None:
    if not path.exists():
        return
    for point in _mounts_under(path):  # debootstrap may leave /proc mounted on failure
        subprocess.run(["umount", "-l", point], check=False)
    shutil.rmtree(path)


def _build_locked(dest: Path, build: Callable[[Path], None]) -> Path:
    """Build ``dest`` via ``<dest>.tmp`` + rename, serialised by ``<dest>.lock``."""
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest.with_name(dest.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if dest.is_dir():
            return dest
        tmp = dest.with_name(dest.name + ".tmp")
        _discard(tmp)
        try:
            build(tmp)
        except BaseException:
            _discard(tmp)
            raise
        os.rename(tmp, dest)
    return dest


# --- Debian ----------------------------------------------------------------------------


def _debootstrap(tmp: Path) -> None:
    log = tmp.with_name(tmp.name.removesuffix(".tmp") + ".log")
    cmd = ["debootstrap", "--variant=minbase", DEBIAN_SUITE, str(tmp)]
    if os.environ.get("LAYERCTL_DEBIAN_MIRROR"):
        cmd.append(os.environ["LAYERCTL_DEBIAN_MIRROR"])
    print(f"building Debian corpus: {' '.join(cmd)} (log {log})", file=sys.stderr)
    with open(log, "w") as out:
        rc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out).returncode
    if rc != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-5:]
        raise CorpusUnavailable(f"debootstrap failed ({rc}), see {log}: " + " | ".join(tail))


def debian_minbase(build: bool = True) -> Path:
    """Path of the cached Debian minbase rootfs; build it if missing and allowed.

    Raises CorpusUnavailable if it is missing and cannot be built. Read-only:
    copy it before changing anything.
    """
    dest = debian_path()
    if dest.is_dir():
        return dest
    if not build:
        raise CorpusUnavailable(f"{dest} not built (python -m benchmarks.corpus debian)")
    if os.geteuid() != 0:
        raise CorpusUnavailable(f"{dest} missing; building it with debootstrap needs root")
    if shutil.which("debootstrap") is None:
        raise CorpusUnavailable(f"{dest} missing and debootstrap is not installed")
    return _build_locked(dest, _debootstrap)


# --- synthetic ----------------------------------------------------------------------------


def debian_or_reason(unavailable: str | None) -> tuple[Path | None, str | None]:
    """(the Debian corpus, None), or (None, why a benchmark that needs it cannot run):
    `unavailable` (a tool or root missing) first, else the corpus missing."""
    if unavailable:
        return None, unavailable
    try:
        return debian_minbase(), None
    except CorpusUnavailable as e:
        return None, f"corpus unavailable: {e}"


def _word_blob(rng: random.Random, size: int) -> bytes:
    letters = "etaoinshrdlucmfwypvbgkjqxz"
    weights = list(range(len(letters), 0, -1))
    vocab = ["".join(rng.choices(letters, weights, k=rng.randint(2, 10))) for _ in range(3000)]
    out: list[str] = []
    length = 0
    while length < size:
        line = " ".join(rng.choices(vocab, k=rng.randint(3, 14))) + "\n"
        out.append(line)
        length += len(line)
    return "".join(out).encode()


def _generate(tmp: Path, n_files: int, seed: int) -> None:
    rng = random.Random(seed)
    blob = _word_blob(rng, 1 << 20)
    recent: list[bytes] = []
    dirs: set[Path] = set()
    tmp.mkdir()
    for i in range(n_files):
        d = tmp / f"d{i // 10_000:02d}" / f"d{(i // 100) % 100:02d}"
        if d not in dirs:
            d.mkdir(parents=True)
            dirs.add(d)
        if recent and rng.random() < 0.05:  # some exact duplicates, as in real trees
            data = rng.choice(recent)
        else:
            size = min(int(rng.expovariate(1 / 1500)), 64 * 1024)
            off = rng.randrange(len(blob) - size)
            data = f"# file {i}\n".encode() + blob[off : off + size]
            recent = (recent + [data])[-500:]
        p = d / f"f{i % 100:02d}.txt"
        p.write_bytes(data)
        p.chmod(0o755 if rng.random() < 0.05 else 0o644)
        os.utime(p, ns=(SYNTHETIC_MTIME_NS, SYNTHETIC_MTIME_NS))
    for d in sorted({*dirs, *(d.parent for d in dirs), tmp}, key=lambda p: -len(p.parts)):
        d.chmod(0o755)
        os.utime(d, ns=(SYNTHETIC_MTIME_NS, SYNTHETIC_MTIME_NS))


def synthetic(n_files: int, seed: int = SYNTHETIC_SEED) -> Path:
    """Path of the cached synthetic tree of ``n_files`` files; generated if missing."""
    dest = synthetic_path(n_files)
    if seed != SYNTHETIC_SEED:
        dest = dest.with_name(f"{dest.name}-seed{seed}")
    return _build_locked(dest, lambda tmp: _generate(tmp, n_files, seed))


# --- command line ----------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.corpus", description="Build and cache benchmark corpora."
    )
    parser.add_argument("which", nargs="*", default=["all"], choices=["debian", *SIZES, "all"])
    args = parser.parse_args(argv)
    which = set(args.which)
    if "all" in which:
        which = {"debian", *SIZES}
    rc = 0
    if "debian" in which:
        try:
            print(debian_minbase())
        except CorpusUnavailable as e:
            print(f"debian: unavailable: {e}", file=sys.stderr)
            rc = 1
    for label, n in SIZES.items():
        if label in which:
            print(synthetic(n))
    return rc


if __name__ == "__main__":
    sys.exit(main())
