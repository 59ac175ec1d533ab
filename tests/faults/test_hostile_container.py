"""A container (or a live file) acting against the host-side reader: entries swapped
for symlinks to host files, FIFOs or devices between the scan and the read,
parents made symlinks before a restore, big files rewritten while committed or
imported, temp files coming and going while status runs, a hostile image's
/etc/passwd. Each race is played exactly at a named fault point (faults.armed).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from layerctl import containers as C
from layerctl import faults
from layerctl import runtime as rt
from layerctl.containers.watch import ChangeWatcher
from layerctl.errors import BadInput, Conflict, LayerctlError
from layerctl.images import parse_name
from layerctl.importer import import_directory
from layerctl.store.objects import BIG_FILE
from layerctl.store.repo import Store

pytestmark = pytest.mark.needs_root

AUTHOR = "Jane <jane@example.com>"
DRIVERS = ["overlay", "vfs"]
SECRET = b"HOST-SECRET-0123456789\n"
MINE = b"m" * (len(SECRET) - 1) + b"\n"  # as long as the secret: a size check cannot tell


# -- fixtures ---------------------------------------------------------------------


@pytest.fixture
def image(store: Store, tmp_path: Path) -> str:
    src = tmp_path / "src"
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "motd").write_bytes(b"welcome\n")
    (src / "usr" / "share" / "doc").mkdir(parents=True)
    (src / "usr" / "share" / "doc" / "README").write_bytes(b"docs\n")
    # A hardlink group whose first member (walk order) lies under a directory.
    (src / "d").mkdir()
    (src / "d" / "x").write_bytes(b"linked\n")
    os.link(src / "d" / "x", src / "y")
    (src / "tmp").mkdir()
    import_directory(store, str(src), parse_name("base"), AUTHOR, "base")
    return "base"


@pytest.fixture(params=DRIVERS)
def container(request: pytest.FixtureRequest, store: Store, image: str) -> Iterator[Path]:
    """A mounted container on `image`; yields the directory its processes see."""
    C.create(store, image, name="c1", driver=request.param)
    try:
        yield Path(C.mount(store, "c1"))
    finally:
        try:
            C.umount(store, "c1")
        except LayerctlError:
            pass


@pytest.fixture
def host_secret(tmp_path: Path) -> Path:
    secret = tmp_path / "host" / "secret"
    secret.parent.mkdir()
    secret.write_bytes(SECRET)
    return secret


def _all_objects(store_root: Path) -> bytes:
    """Every object of the store, uncompressed (git cat-file), to search for bytes."""
    return subprocess.run(
        ["git", "--git-dir", str(store_root), "cat-file", "--batch-all-objects", "--batch"],
        check=True, capture_output=True).stdout


def _refs(store_root: Path) -> str:
    return subprocess.run(["git", "--git-dir", str(store_root), "for-each-ref"],
                          check=True, capture_output=True, text=True).stdout


def _both_fscks(cli: Callable, store_root: Path) -> None:
    git = subprocess.run(["git", "--git-dir", str(store_root), "fsck", "--strict",
                          "--no-dangling"], capture_output=True, text=True)
    assert git.returncode == 0 and "error" not in git.stderr, git.stderr
    assert cli("fsck").stdout.startswith("ok:")
    leftovers = [n for n in os.listdir(store_root / "objects" / "pack") if n.startswith("tmp_")]
    assert leftovers == []


def _swap(path: Path, make: Callable[[Path], None]) -> Callable[[], None]:
    """A hook that replaces `path` once (rename over it, as a process would)."""
    done: list[bool] = []

    def hook() -> None:
        if done:
            return
        done.append(True)
        tmp = path.with_name(path.name + ".swap")
        make(tmp)
        os.rename(tmp, path)

    return hook


def _to_symlink(target: Path) -> Callable[[Path], None]:
    return lambda p: os.symlink(target, p)


def _to_fifo(p: Path) -> None:
    os.mkfifo(p)


def _to_zero_device(p: Path) -> None:
    os.mknod(p, 0o666 | stat.S_IFCHR, os.makedev(1, 5))  # /dev/zero: reads never end


SWAPS = {"symlink-to-host": None, "fifo": _to_fifo, "char-device": _to_zero_device}


# -- content swapped between the scan and the read ----------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("swap", SWAPS)
def test_commit_never_reads_what_is_swapped_in(store, store_root, container, host_secret,
                                               cli, swap):
    target = container / "etc" / "motd"
    target.write_bytes(MINE)
    make = SWAPS[swap] or _to_symlink(host_secret)
    refs_before = _refs(store_root)
    with faults.armed("commit.before-read", _swap(target, make)):
        with pytest.raises(Conflict, match="/etc/motd changed while being committed; try again"):
            C.commit(store, "c1", tag="base:next")
    assert _refs(store_root) == refs_before
    assert SECRET not in _all_objects(store_root)
    _both_fscks(cli, store_root)


@pytest.mark.timeout(60)
def test_commit_never_follows_a_parent_swapped_for_a_host_symlink(store, store_root, container,
                                                                  host_secret, cli):
    (container / "usr" / "share" / "doc" / "README").unlink()
    (container / "usr" / "share" / "doc" / "secret").write_bytes(MINE)

    def swap_parent() -> None:
        doc = container / "usr" / "share" / "doc"
        if doc.is_symlink():
            return
        shutil.rmtree(doc)  # not a rename: overlay (redirect_dir=off) refuses that for a lower dir
        os.symlink(host_secret.parent, doc)

    with faults.armed("commit.before-read", swap_parent):
        with pytest.raises(Conflict, match="changed while being committed; try again"):
            C.commit(store, "c1", paths=["/usr/share/doc/secret"])
    assert SECRET not in _all_objects(store_root)
    _both_fscks(cli, store_root)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("swap", SWAPS)
def test_status_never_reads_what_is_swapped_in(store, store_root, container, host_secret, swap):
    target = container / "etc" / "motd"
    target.write_bytes(MINE)
    make = SWAPS[swap] or _to_symlink(host_secret)
    with faults.armed("scan.before-hash", _swap(target, make)):
        changes = C.status(store, "c1")
    # Looked at again: reported as what it is now, promptly.
    motd = {ch.path: ch for ch in changes}[b"etc/motd"]
    assert motd.new.kind == {"symlink-to-host": "l", "fifo": "p", "char-device": "c"}[swap]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("swap", SWAPS)
def test_patch_never_reads_what_is_swapped_in(store, container, host_secret, swap):
    from layerctl.cli.containers import patch_lines

    target = container / "etc" / "motd"
    target.write_bytes(MINE)
    p = C.pending(store, C.resolve(store, "c1"))
    _swap(target, SWAPS[swap] or _to_symlink(host_secret))()  # after the scan, before the read
    motd = {ch.path: ch for ch in p.changes}[b"etc/motd"]
    with pytest.raises(Conflict, match="/etc/motd changed while being read; try again"):
        patch_lines(store, p, motd)


# -- restore ---------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_restore_never_links_a_host_file_through_a_container_symlink(store, image, tmp_path):
    C.create(store, image, name="v", driver="vfs")
    top = Path(C.mount(store, "v"))
    host_dir = tmp_path / "hostdir"
    host_dir.mkdir()
    host_file = host_dir / "x"
    host_file.write_bytes(b"host file\n")
    # The container removes /y and turns /d (holding the group's first member) into a
    # symlink to a host directory: restoring /y must not hardlink the host's x.
    (top / "y").unlink()
    (top / "d" / "x").unlink()
    (top / "d").rmdir()
    os.symlink(host_dir, top / "d")
    C.restore(store, "v", ["/y"])
    assert (top / "y").read_bytes() == b"linked\n"
    (top / "y").write_bytes(b"written by the container\n")
    assert os.stat(host_file).st_nlink == 1
    assert host_file.read_bytes() == b"host file\n"
    assert os.stat(top / "y").st_ino != os.stat(host_file).st_ino


@pytest.mark.timeout(60)
def test_restore_never_writes_through_a_parent_swapped_meanwhile(store, image, tmp_path):
    C.create(store, image, name="v", driver="vfs")
    top = Path(C.mount(store, "v"))
    host_dir = tmp_path / "hostdir"
    host_dir.mkdir()
    (top / "usr" / "share" / "doc" / "README").write_bytes(b"mine\n")

    def swap_parent() -> None:  # after the restore found the parent, before it writes
        doc = top / "usr" / "share" / "doc"
        if not doc.is_symlink():
            os.rename(doc, doc.with_name("doc.old"))
            os.symlink(host_dir, doc)

    with faults.armed("restore.before-write", swap_parent):
        C.restore(store, "v", ["/usr/share/doc/README"])
    assert os.listdir(host_dir) == []  # written where it was found, inside the container
    assert (top / "usr" / "share" / "doc.old" / "README").read_bytes() == b"docs\n"


# -- big files rewritten while read ----------------------------------------------------


BIG = BIG_FILE + (3 << 20)


def _make_big(path: Path) -> None:
    with open(path, "wb") as f:  # sparse: cheap on disk, still 67 MiB to read
        f.truncate(BIG)
        f.seek(BIG // 2)
        f.write(b"middle")


def _rewrite_at_chunk(path: Path, how: str, nth: int = 3) -> Callable[[], None]:
    calls: list[int] = []

    def hook() -> None:
        calls.append(1)
        if len(calls) != nth:
            return
        with open(path, "r+b") as f:
            if how == "grow":
                f.seek(0, os.SEEK_END)
                f.write(b"grown" * 1000)
            else:  # in place, same size: the hashed and the stored bytes would differ
                f.seek(BIG - 10)
                f.write(b"REWRITTEN!")
                f.seek(0)
                f.write(b"REWRITTEN!")

    return hook


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["rewrite", "grow"])
def test_big_file_rewritten_during_commit(store, store_root, container, cli, how):
    big = container / "big"
    _make_big(big)
    refs_before = _refs(store_root)
    with faults.armed("pack.read-big-chunk", _rewrite_at_chunk(big, how)):
        with pytest.raises(Conflict, match="/big changed while being committed; try again"):
            C.commit(store, "c1", tag="base:big")
    assert _refs(store_root) == refs_before
    _both_fscks(cli, store_root)
    C.commit(store, "c1", tag="base:big")  # once it holds still, it commits
    _both_fscks(cli, store_root)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["rewrite", "grow"])
def test_big_file_rewritten_during_import(store, store_root, tmp_path, cli, how):
    src = tmp_path / "imp"
    src.mkdir()
    (src / "small").write_bytes(b"small\n")
    _make_big(src / "big")
    with faults.armed("pack.read-big-chunk", _rewrite_at_chunk(src / "big", how)):
        with pytest.raises(BadInput, match="big changed while importing; try again"):
            import_directory(store, str(src), parse_name("imp"), AUTHOR, "x")
    assert "refs/images" not in _refs(store_root)
    _both_fscks(cli, store_root)


# -- a busy container --------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_entry_vanishing_after_lstat_is_absent(store, container):
    tmp = container / "tmp"
    names = [tmp / f"t{i}" for i in range(20)]
    for p in names:
        p.write_bytes(b"temp\n")
    vanished: list[int] = []

    def come_and_go() -> None:
        # Right after the scan lstat-ed an entry: the temp files go if they were
        # there (so a t* just looked at has vanished), else they come back.
        if names[0].exists():
            for p in names:
                p.unlink()
            vanished.append(1)
        else:
            for p in names:
                p.write_bytes(b"temp\n")

    with faults.armed("scan.after-lstat", come_and_go):
        changes = C.status(store, "c1")
    assert vanished
    for ch in changes:  # what is reported was there when looked at, with its content
        if ch.path.startswith(b"tmp/t"):
            assert ch.status == "A" and ch.new.size == 5


@pytest.fixture
def churn(container: Path) -> Iterator[Path]:
    """A real process creating and deleting temp files (and dirs) in the container."""
    code = (
        "import os, sys\n"
        "top = sys.argv[1]\n"
        "i = 0\n"
        "print('ready', flush=True)\n"
        "while True:\n"
        "    d = os.path.join(top, 'd%d' % (i % 7))\n"
        "    f = os.path.join(top, 'f%d' % (i % 13))\n"
        "    try:\n"
        "        os.mkdir(d); open(os.path.join(d, 'x'), 'w').write('x' * i)\n"
        "        open(f, 'w').write('y' * (i % 5000))\n"
        "        os.unlink(os.path.join(d, 'x')); os.rmdir(d); os.unlink(f)\n"
        "    except OSError:\n"
        "        pass\n"
        "    i += 1\n"
    )
    top = container / "tmp"
    proc = subprocess.Popen([sys.executable, "-c", code, str(top)], stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"ready\n"  # churning from now on
        yield top
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.timeout(120)
def test_status_in_a_busy_container_never_crashes(store, container, churn):
    listings = set()
    deadline = time.monotonic() + 60
    rounds = 0
    # 40 rounds at least, and on until the churn was seen to run (a loaded machine may
    # not schedule it during the first 40)
    while rounds < 40 or (len(listings) < 2 and time.monotonic() < deadline):
        rounds += 1
        listings.add(frozenset(os.listdir(churn)))
        try:
            C.status(store, "c1")
        except Conflict as e:  # a file rewritten twice while read: said, not a crash
            assert "keeps changing" in str(e)
    # The churn really ran while status did (whether a status call happened to catch a
    # temp file alive is timing; the vanished-entry path itself is hit deterministically
    # by test_entry_vanishing_after_lstat_is_absent).
    assert len(listings) > 1


@pytest.mark.timeout(120)
def test_watch_in_a_busy_container_never_crashes(store, container, churn):
    updates: list = []
    c = C.resolve(store, "c1")
    watcher = ChangeWatcher(store, c, updates.extend, initial=C.status(store, "c1"))
    watcher.start()
    try:
        for _ in range(40):
            for name in os.listdir(churn):
                watcher._note(os.fsencode(os.path.join(watcher.top, "tmp", name)))
            watcher._note(os.fsencode(os.path.join(watcher.top, "tmp", "gone-already")))
            watcher.poll()
    finally:
        watcher.stop()


# -- run's user lookup in a hostile image -------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", ["fifo", "char-device", "huge"])
def test_user_lookup_refuses_special_or_huge_passwd(tmp_path, kind):
    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    passwd = rootfs / "etc" / "passwd"
    if kind == "fifo":
        os.mkfifo(passwd)
    elif kind == "char-device":
        _to_zero_device(passwd)
    else:
        with open(passwd, "wb") as f:
            f.write(b"alice:x:1000:1000::/home/alice:/bin/sh\n")
            f.truncate(rt.USER_DB_LIMIT + 1)
    with pytest.raises(BadInput, match="/etc/passwd in the image"):
        rt.resolve_user(str(rootfs), "alice")


@pytest.mark.timeout(30)
def test_user_lookup_refuses_special_group_through_a_symlink(tmp_path):
    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "etc" / "passwd").write_text("alice:x:1000:1000::/home/alice:/bin/sh\n")
    os.mkfifo(rootfs / "fifo")
    os.symlink("/fifo", rootfs / "etc" / "group")
    with pytest.raises(BadInput, match="/etc/group in the image is not a regular file"):
        rt.resolve_user(str(rootfs), "alice")


@pytest.mark.timeout(120)
def test_big_file_import_tar_comes_from_the_same_read(store, tmp_path):
    # The changeset tar (its sha256 is the DiffID) gets a big file's bytes from the
    # one read that hashes and stores it: the DiffID matches the stored content.
    from layerctl.changeset.write import write_changeset
    from layerctl.store.layers import read_layer

    src = tmp_path / "imp"
    src.mkdir()
    (src / "a").write_bytes(b"before\n")
    _make_big(src / "big")
    (src / "z").write_bytes(b"after\n")
    layer_id = import_directory(store, str(src), parse_name("imp"), AUTHOR, "x")
    layer = read_layer(store, layer_id)
    assert layer.diff_id == write_changeset(store, None, layer.root)[0]
    with open(src / "big", "rb") as f:
        assert store.read_blob(_blob_of(store, layer.root, b"big")) == f.read()


def _blob_of(store: Store, root: object, name: bytes) -> bytes:
    from layerctl.store.fstree import read_dir

    return read_dir(store, root).files[name][1]


@pytest.mark.timeout(60)
def test_walks_never_enter_a_directory_swapped_for_a_host_symlink(store, container, tmp_path):
    from layerctl.containers.drivers import driver_for, overlay, vfs

    host_dir = tmp_path / "hostdir"
    host_dir.mkdir()
    (host_dir / "host-only").write_bytes(b"x")
    sub = container / "tmp" / "sub"
    sub.mkdir()
    (sub / "mine").write_bytes(b"y")
    c = C.resolve(store, "c1")
    top = os.fsencode(driver_for(c).top(store, c))

    from layerctl.beneath import walk

    dirs = [rel for rel, _st, fd in walk(top) if fd is not None]
    calls: list[int] = []

    def swap() -> None:  # the walk has seen tmp/sub as a directory, and is about to enter
        calls.append(1)
        if len(calls) == dirs.index(b"tmp/sub") + 1:
            shutil.rmtree(sub)
            os.symlink(host_dir, sub)

    with faults.armed("walk.before-enter", swap):
        if c.driver == "overlay":
            paths = [p for p, _kind in overlay.upper_entries(top)]
        else:
            paths = list(vfs.walk_rootfs(top))
    assert sub.is_symlink()  # the swap happened, right before the walk entered it
    assert not [p for p in paths if p.endswith(b"host-only")]


@pytest.mark.timeout(60)
def test_export_never_reads_what_is_swapped_in(store, container, host_secret, tmp_path):
    import io

    from layerctl.oci.archive.export import export_to

    target = container / "etc" / "motd"
    target.write_bytes(MINE)
    out = io.BytesIO()
    with faults.armed("commit.before-read", _swap(target, _to_symlink(host_secret))):
        with pytest.raises(Conflict, match="/etc/motd changed while being exported; try again"):
            export_to(store, "c1", out)
    assert SECRET not in out.getvalue()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("driver", DRIVERS)
def test_restore_of_a_tree_wider_than_the_kept_fds(store, tmp_path, driver):
    # More hardlinked directories than beneath.Tree keeps fds for: the restore's own
    # fds stay valid while the tree closes and reopens the ones it keeps.
    src = tmp_path / "wide"
    for i in range(200):
        d = src / "many" / f"s{i:03d}"
        d.mkdir(parents=True)
        (d / "f").write_bytes(b"%d\n" % i)
        os.link(d / "f", d / "g")
    import_directory(store, str(src), parse_name("wide"), AUTHOR, "x")
    C.create(store, "wide", name="w", driver=driver)
    top = Path(C.mount(store, "w"))
    try:
        shutil.rmtree(top / "many")
        C.restore(store, "w", ["/many"])
        assert C.status(store, "w") == []
        st = os.stat(top / "many" / "s199" / "g")
        assert st.st_nlink == 2 and st.st_ino == os.stat(top / "many" / "s199" / "f").st_ino
    finally:
        C.umount(store, "w")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("swap", SWAPS)
def test_import_never_reads_what_is_swapped_in(store, store_root, tmp_path, host_secret, swap):
    src = tmp_path / "imp"
    src.mkdir()
    target = src / "file"
    target.write_bytes(MINE)
    make = SWAPS[swap] or _to_symlink(host_secret)
    with faults.armed("import.before-read", _swap(target, make)):
        with pytest.raises(BadInput, match="file changed while importing; try again"):
            import_directory(store, str(src), parse_name("imp"), AUTHOR, "x")
    assert "refs/images" not in _refs(store_root)
    assert SECRET not in _all_objects(store_root)


@pytest.mark.timeout(120)
def test_status_cli_in_a_busy_container_never_shows_a_traceback(cli, container, churn):
    for _ in range(8):
        proc = cli("status", "c1", check=False)
        assert "Traceback" not in proc.stderr
        assert proc.returncode == 0 or "keeps changing" in proc.stderr, proc.stderr
