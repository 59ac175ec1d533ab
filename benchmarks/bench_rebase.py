"""History-editing benchmarks (issue 15).

Rows:
- rebase replay: a 3-layer app (1,000 files added, 300 rewritten, 100 deleted, /etc/passwd
  edited) on the Debian minbase, replayed onto an "upgraded" Debian (60 files changed, 20
  added, 10 deleted, dpkg status and /etc/passwd rewritten): `layerctl rebase IMAGE --onto
  NEW -t T` vs `git rebase NEW` of the same three commits in a git checkout of the same
  trees (target: at most 1.0x).
- the same rebase with 100k more files in both bases, against the same rebase on the
  minbase (target: at most 1.5x).
- squash of 10 layers (100 files each) on Debian: `layerctl squash IMAGE BASE..`; the
  peer is `buildah commit --squash` when buildah is installed, else the time is absolute
  (podman's `build --squash` reruns the steps, not comparable).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from benchmarks import corpus
from benchmarks.harness import (
    CommandFailed,
    Options,
    Row,
    copy_tree,
    fresh_dir,
    git,
    layerctl,
    layerctl_unavailable,
    timeit,
)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def upgrade(root: Path) -> None:
    """Change a Debian rootfs the way a point upgrade does."""
    docs = sorted(p for p in (root / "usr/share/doc").rglob("*") if p.is_file()
                  and not p.is_symlink())
    for p in docs[:60]:
        p.write_bytes(p.read_bytes() + b"\nupgraded\n")
    for p in docs[60:70]:
        p.unlink()
    for i in range(20):
        _write(root / f"usr/share/doc/newpkg/file{i}", b"new %d\n" % i)
    status = root / "var/lib/dpkg/status"
    status.write_bytes(status.read_bytes().replace(b"Version: ", b"Version: 1:", 3))
    passwd = root / "etc/passwd"
    lines = passwd.read_bytes().splitlines(keepends=True)
    lines[1] = b"daemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
    passwd.write_bytes(b"".join(lines))


def app_step(root: Path, k: int) -> None:
    """The app's three layers: 1,000 files, then 300 rewritten, then 100 deleted."""
    if k == 0:
        for i in range(1000):
            _write(root / f"app/m{i // 100}/f{i}.txt", b"line %d\n" % i * 20)
        passwd = root / "etc/passwd"
        passwd.write_bytes(passwd.read_bytes() + b"app:x:1000:1000::/app:/bin/sh\n")
    elif k == 1:
        for i in range(0, 900, 3):
            (root / f"app/m{i // 100}/f{i}.txt").write_bytes(b"rewritten %d\n" % i)
    else:
        for i in range(1, 1000, 10):
            (root / f"app/m{i // 100}/f{i}.txt").unlink()


def _unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root (overlay containers)"
    if shutil.which("git") is None:
        return "git not installed"
    return layerctl_unavailable()


def _layerctl_rebase(opts: Options, store: Path, old_tree: Path, new_tree: Path) -> float:
    """Import both bases, commit the app's three layers from a container on the old
    one, and time `layerctl rebase` of them onto the new one."""
    layerctl(store, "import", old_tree, "deb:old")
    layerctl(store, "import", new_tree, "deb:new")
    layerctl(store, "create", "--name", "b", "deb:old")
    try:
        merged = Path(layerctl(store, "mount", "b").stdout.decode().strip())
        for k in range(3):
            app_step(merged, k)
            layerctl(store, "commit", "-m", f"app {k}", "b", "app:1")
        layerctl(store, "umount", "b")
    finally:
        layerctl(store, "rm", "-f", "b")

    def reset() -> None:
        try:
            layerctl(store, "rmi", "app:r")
        except CommandFailed:
            pass

    return timeit(lambda: layerctl(store, "rebase", "app:1", "--onto", "deb:new", "-t",
                                   "app:r"), opts.repeat, reset)


def _git_rebase(opts: Options, old_tree: Path, checkout: Path) -> float:
    """The same trees and commits in a git checkout; time `git rebase new`."""
    copy_tree(old_tree, checkout)
    gw = ["-C", checkout]
    git(*gw, "init", "-q", "-b", "old")
    git(*gw, "add", "-A")
    git(*gw, "commit", "-q", "-m", "old base")
    git(*gw, "checkout", "-q", "-b", "new")
    upgrade(checkout)
    git(*gw, "add", "-A")
    git(*gw, "commit", "-q", "-m", "new base")
    git(*gw, "checkout", "-q", "-f", "-b", "app-orig", "old")
    for k in range(3):
        app_step(checkout, k)
        git(*gw, "add", "-A")
        git(*gw, "commit", "-q", "-m", f"app {k}")
    return timeit(lambda: git(*gw, "rebase", "-q", "new"), opts.repeat,
                  lambda: git(*gw, "checkout", "-q", "-f", "-B", "app", "app-orig"))


def rebase_replay(opts: Options) -> list[Row]:
    name = "rebase replay: 3-layer app (1k files), Debian -> upgraded Debian"
    peer = "git rebase"
    source, reason = corpus.debian_or_reason(_unavailable())
    if reason:
        return [Row(name, None, peer, None, reason)]
    work = fresh_dir(opts.workdir / "rebase")
    work.mkdir(parents=True)
    store = work / "store"
    store.mkdir()
    try:
        new_tree = copy_tree(source, work / "new")
        upgrade(new_tree)
        t_ours = _layerctl_rebase(opts, store, source, new_tree)
        t_git = _git_rebase(opts, source, work / "git")
        return [Row(name, t_ours, peer, t_git)]
    except CommandFailed as e:
        return [Row(name, None, peer, None, f"failed: {e}")]
    finally:
        fresh_dir(work)


def rebase_replay_100k(opts: Options) -> list[Row]:
    """The same app and upgrade with 100k more files in both bases: the peer is the same
    rebase on the minbase (target: at most 1.5x — cost follows the changed paths)."""
    name = "rebase replay: same app, base with 100k more files"
    peer = "layerctl rebase on minbase"
    source, reason = corpus.debian_or_reason(_unavailable())
    if reason:
        return [Row(name, None, peer, None, reason)]
    n = 20_000 if opts.quick else 100_000
    work = fresh_dir(opts.workdir / "rebase100k")
    work.mkdir(parents=True)
    try:
        small_new = copy_tree(source, work / "small-new")
        upgrade(small_new)
        (work / "s1").mkdir()
        t_small = _layerctl_rebase(opts, work / "s1", source, small_new)
        fresh_dir(small_new)
        big_old = copy_tree(source, work / "big-old")
        copy_tree(corpus.synthetic(n), big_old / "usr/share/synth")
        big_new = copy_tree(big_old, work / "big-new")
        upgrade(big_new)
        (work / "s2").mkdir()
        t_big = _layerctl_rebase(opts, work / "s2", big_old, big_new)
        return [Row(name, t_big, peer, t_small, f"{n} extra files")]
    except (CommandFailed, corpus.CorpusUnavailable) as e:
        return [Row(name, None, peer, None, f"failed: {e}")]
    finally:
        fresh_dir(work)


def squash_ten(opts: Options) -> list[Row]:
    name = "squash 10 layers (100 files each) on Debian"
    peer = "buildah commit --squash"
    source, reason = corpus.debian_or_reason(_unavailable())
    if reason:
        return [Row(name, None, peer, None, reason)]
    work = fresh_dir(opts.workdir / "squash")
    work.mkdir(parents=True)
    store = work / "store"
    store.mkdir()
    try:
        base = layerctl(store, "import", source, "deb:old").stdout.decode().strip()
        layerctl(store, "create", "--name", "s", "deb:old")
        merged = Path(layerctl(store, "mount", "s").stdout.decode().strip())
        for k in range(10):
            for i in range(100):
                _write(merged / f"srv/l{k}/f{i}", os.urandom(2000))
            if k:
                shutil.rmtree(merged / f"srv/l{k - 1}")  # half the bytes squash away
            layerctl(store, "commit", "-m", f"step {k}", "s", "sq:1")
        layerctl(store, "umount", "s")
        top = layerctl(store, "inspect", "-f", "{{.Id}}", "sq:1").stdout.decode().strip()
        top = subprocess.run(["git", "--git-dir", store, "rev-parse", "refs/images/sq/_tags/1"],
                             capture_output=True, text=True).stdout.strip() or top
        t = timeit(lambda: layerctl(store, "squash", "sq:1", f"{base[:12]}.."), opts.repeat,
                   lambda: layerctl(store, "tag", top, "sq:1"))
        note = "" if shutil.which("buildah") else "buildah not installed: absolute time"
        return [Row(name, t, peer, None, note)]
    except CommandFailed as e:
        return [Row(name, None, peer, None, f"failed: {e}")]
    finally:
        try:
            layerctl(store, "rm", "-f", "s")
        except CommandFailed:
            pass
        fresh_dir(work)


BENCHMARKS = [rebase_replay, rebase_replay_100k, squash_ten]
