"""`layerctl rebase` on real Debian images: the issue's acceptance scenarios (a)-(e),
plus kill -9 at each rebase fault point and --abort restoring the exact prior state.

One store per module (importing Debian costs seconds): OLDBASE is the minbase rootfs
imported; NEWBASE is a separate base layer (no parent) made from it the way an upgrade
changes a rootfs: files changed, added and deleted, a package's files and its dpkg
status stanza rewritten, /etc/passwd edited. Each test names its own tags and
containers, and its teardown aborts a rebase it left in progress.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from layerctl.images import parse_name, resolve, set_tag
from layerctl.importer import commit_root
from layerctl.store.edit import TreeEditor
from layerctl.store.fstree import lookup
from layerctl.store.layers import read_layer
from layerctl.store.objects import BLOB
from layerctl.store.repo import Store
from tests.layerhelpers import AUTHOR, commit_edit, import_dir, put_file, release_containers
from tests.paths import REPO_ROOT
from tests.treecompare import compare

pytestmark = pytest.mark.needs_root

KILLED = -signal.SIGKILL

NEW_PASSWD_LINE = b"daemon:x:1:1:daemon:/usr/sbin:/bin/false\n"


# -- fixtures ----------------------------------------------------------------------------


def _upgrade(store: Store, old_id: str) -> str:
    """NEWBASE: OLDBASE's tree changed like a point upgrade, as a separate base layer."""
    old = read_layer(store, old_id)
    ed = TreeEditor(store, old.root)
    with store.pack_writer() as w:
        status = store.read_blob(lookup(store, old.root, b"var/lib/dpkg/status")[1])
        start = status.index(b"Package: base-files\n")
        version = status.index(b"\nVersion: ", start) + 1
        end = status.index(b"\n", version)
        status = status[:version] + b"Version: 12.4+deb12u99" + status[end:]
        _put(store, ed, w, b"var/lib/dpkg/status", status)
        _put(store, ed, w, b"etc/issue", b"Debian GNU/Linux 12.99 \\n \\l\n\n")
        _put(store, ed, w, b"etc/debian_version", b"12.99\n")
        passwd = store.read_blob(lookup(store, old.root, b"etc/passwd")[1])
        lines = passwd.splitlines(keepends=True)
        lines[1] = NEW_PASSWD_LINE  # a line in the middle: the app appends at the end
        _put(store, ed, w, b"etc/passwd", b"".join(lines))
        ed.set_dir(b"usr/share/doc/newpkg", ed.get(b"usr/share/doc/apt")[0])
        put_file(ed, w, b"usr/share/doc/newpkg/copyright", b"new package\n")
        put_file(ed, w, b"usr/share/doc/sed/NEWS.added", b"added by the upgrade\n")
        for name in ed.children(b"usr/share/doc/bash"):
            ed.delete(b"usr/share/doc/bash/" + name)
            break
        root = ed.write(w)
        w.finish()
    store.landed()
    layer = commit_root(store, root, None, None, old.config, AUTHOR, "upgraded base",
                        "debian upgrade", 0)
    set_tag(store, parse_name("deb:new"), layer)
    return layer


def _put(store: Store, ed: TreeEditor, w: object, path: bytes, data: bytes) -> None:
    meta, _blob = ed.get(path)

    ed.set_file(path, meta.replace(size=len(data), mtime_ns=meta.mtime_ns + 10**9),
                w.add(BLOB, data))


@pytest.fixture(scope="module")
def world(tmp_path_factory, debian_rootfs):
    """(store root, store, old base id, new base id) shared by the module."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    root = tmp_path_factory.mktemp("rebase") / "store"
    root.mkdir()
    store = Store(str(root))
    old = import_dir(store, debian_rootfs, "deb:old", "debian minbase")
    new = _upgrade(store, old)
    try:
        yield root, store, old, new
    finally:
        release_containers(store)


@pytest.fixture
def env(world, monkeypatch):
    root, store, old, new = world
    monkeypatch.setenv("LAYERCTL_ROOT", str(root))
    yield world
    run(root, "rebase", "--abort", check=False)  # a failed test's leftovers
    for line in run(root, "ps", "-a", "-q", "--no-trunc").stdout.split():
        run(root, "rm", "-f", line, check=False)


def run(root: Path, *args: object, check: bool = True, env: dict | None = None,
        input: str | None = None) -> subprocess.CompletedProcess:
    from tests.layerhelpers import cli_env

    full = cli_env(root, REPO_ROOT)
    full.update(env or {})
    r = subprocess.run([sys.executable, "-m", "layerctl", *map(str, args)], env=full,
                       capture_output=True, text=True, input=input,
                       stdin=None if input is not None else subprocess.DEVNULL, timeout=600)
    if check and r.returncode != 0:
        pytest.fail(f"layerctl {' '.join(map(str, args))}: exit {r.returncode}\n"
                    f"{r.stdout}{r.stderr}", pytrace=False)
    return r


def all_refs(root: Path) -> dict[str, str]:
    """Every ref but undo's snapshots (refs/undo/: history kept for `layerctl undo`,
    which a reset inside the rebase or its abort adds to, as any reset does)."""
    out = subprocess.run(["git", "--git-dir", str(root), "for-each-ref",
                          "--format=%(refname) %(objectname)"], capture_output=True,
                         text=True, check=True).stdout
    return {ref: sha for ref, sha in (line.split() for line in out.splitlines())
            if not ref.startswith("refs/undo/")}


def fsck_clean(root: Path) -> None:
    r = subprocess.run(["git", "--git-dir", str(root), "fsck", "--strict"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "error" not in r.stderr.lower(), r.stdout + r.stderr
    run(root, "fsck")


def app_layers(store: Store, base: str, name: str, files: int = 3) -> list[str]:
    """Three app layers touching only /app."""
    ids = []
    parent = base

    def first(ed, w):
        ed.set_dir(b"app", ed.get(b"etc")[0])
        for i in range(files):
            put_file(ed, w, b"app/f%d" % i, b"file %d\n" % i)

    def second(ed, w):
        put_file(ed, w, b"app/f0", b"changed\n")
        ed.set_dir(b"app/lib", ed.get(b"etc")[0])
        put_file(ed, w, b"app/lib/x.so", b"\x7fELF" + b"\0" * 100, mode=0o755)

    def third(ed, w):
        ed.delete(b"app/f1")
        put_file(ed, w, b"app/run.sh", b"#!/bin/sh\nexec /app/f0\n", mode=0o755)

    for k, edit in enumerate((first, second, third)):
        parent = commit_edit(store, parent, edit, message=f"app step {k}")
        ids.append(parent)
    set_tag(store, parse_name(name), parent)
    return ids


def checkout_dir(root: Path, ref: str, dest: Path) -> Path:
    run(root, "checkout", ref, dest)
    return dest


# -- (a) app layers touching only /app ----------------------------------------------------


def test_a_app_layers_rebase_cleanly(env, tmp_path):
    root, store, old, new = env
    ids = app_layers(store, old, "appa:1")
    out = run(root, "rebase", "appa:1", "--onto", "deb:new").stdout
    assert "tagged appa:1-rebased" in out
    store = Store(str(root))
    assert resolve(store, "appa:1") == ids[-1]  # the original tag stays
    result = resolve(store, "appa:1-rebased")
    chain = []
    layer = read_layer(store, result)
    while layer.parent:
        chain.append(layer)
        layer = read_layer(store, layer.parent)
    assert layer.id == new and len(chain) == 3
    assert [la.trailers["Rebased-From"] for la in reversed(chain)] == ids
    assert all(la.trailers["Base-Layer"] == new for la in chain)
    # The result's checkout is NEWBASE's plus the app files, entry by entry.
    got = checkout_dir(root, "appa:1-rebased", tmp_path / "got")
    want = checkout_dir(root, "deb:new", tmp_path / "want")
    app = checkout_dir(root, "appa:1", tmp_path / "app")
    subprocess.run(["cp", "-a", str(app / "app"), str(want / "app")], check=True)
    os.utime(want, ns=(0, os.lstat(got).st_mtime_ns))
    assert compare(got, want) == []
    fsck_clean(root)


# -- (b) /etc/passwd changed by both: a clean line merge ----------------------------------


def test_b_container_user_added_merges_with_new_base_passwd(env):
    root, store, old, new = env
    run(root, "create", "deb:old", "--name", "cb")
    merged = Path(run(root, "mount", "cb").stdout.strip())
    before = (merged / "etc/passwd").read_bytes()
    (merged / "etc/passwd").write_bytes(before + b"app:x:1000:1000::/app:/bin/sh\n")
    (merged / "srv/data").write_bytes(b"kept\n")
    out = run(root, "rebase", "cb", "--onto", "deb:new").stdout
    assert "rebase of cb" in out
    store = Store(str(root))
    from layerctl.containers.state import base
    from layerctl.containers.state import resolve as find

    assert base(store, find(store, "cb")) == new
    status = run(root, "status", "cb").stdout.split("\n")
    assert "C /etc/passwd" in status and "A /srv/data" in status
    lines = before.splitlines(keepends=True)
    lines[1] = NEW_PASSWD_LINE
    assert (merged / "etc/passwd").read_bytes() == b"".join(lines) + \
        b"app:x:1000:1000::/app:/bin/sh\n"
    assert (merged / "etc/debian_version").read_bytes() == b"12.99\n"
    assert (merged / "srv/data").read_bytes() == b"kept\n"
    run(root, "umount", "cb")
    fsck_clean(root)


# -- (c) both upgraded a package: dpkg status conflict, --abort restores everything -------


def test_c_dpkg_status_conflict_and_abort_restores_exactly(env, tmp_path):
    root, store, old, new = env
    run(root, "create", "deb:old", "--name", "cc")
    merged = Path(run(root, "mount", "cc").stdout.strip())
    status = (merged / "var/lib/dpkg/status").read_bytes()
    # The container "upgraded" another package: a different stanza than the base's —
    # a line merge would be clean, and wrong about what is installed.
    i = status.index(b"Package: sed\n")
    v = status.index(b"\nVersion: ", i) + 1
    status = status[:v] + b"Version: 4.9-99" + status[status.index(b"\n", v):]
    (merged / "var/lib/dpkg/status").write_bytes(status)
    (merged / "usr/bin/sed").write_bytes(b"#!/bin/sh\n")
    (merged / "tmp/x").write_bytes(b"x\n")
    refs_before = all_refs(root)
    status_before = run(root, "status", "cc").stdout
    snap_before = _snapshot(merged)
    r = run(root, "rebase", "cc", "--onto", "deb:new", check=False)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "package database changed on both sides: /var/lib/dpkg/status" in r.stderr
    assert "re-run the package step" in r.stderr
    assert "rebase of cc in progress" in run(root, "status", "cc").stdout
    fsck_clean(root)
    assert "aborted" in run(root, "rebase", "--abort").stdout
    assert all_refs(root) == refs_before
    assert run(root, "status", "cc").stdout == status_before
    assert compare(_snapshot(merged), snap_before) == []
    run(root, "umount", "cc")


def _snapshot(path: Path):
    from tests.treecompare import snapshot

    return snapshot(path)


# -- (d) app deleted a directory the new base added a file to ----------------------------


def test_d_modify_delete_conflict_resolved_in_container(env):
    root, store, old, new = env

    def rm_doc(ed, w):
        ed.delete(b"usr/share/doc/sed")
        put_file(ed, w, b"etc/app.conf", b"x=1\n")

    layer = commit_edit(store, old, rm_doc, name="appd:1", message="slim docs")
    r = run(root, "rebase", "appd:1", "--onto", "deb:new", check=False)
    assert r.returncode == 1
    assert ("deleted by layer, modified by new base: /usr/share/doc/sed "
            "(new base changed /usr/share/doc/sed/NEWS.added)") in r.stderr
    container = [w for w in r.stderr.split() if w.startswith("rebase-")][0]
    line = run(root, "status", container).stdout.splitlines()[0]
    assert "1 conflicts" in line and container in line
    merged = Path(run(root, "mount", container).stdout.strip())
    assert (merged / "usr/share/doc/sed/NEWS.added").exists()  # the new base's side kept
    subprocess.run(["rm", "-rf", str(merged / "usr/share/doc/sed")], check=True)
    out = run(root, "rebase", "--continue").stdout
    assert "tagged appd:1-rebased" in out
    store = Store(str(root))
    result = read_layer(store, resolve(store, "appd:1-rebased"))
    assert result.parent == new and result.trailers["Rebased-From"] == layer
    assert lookup(store, result.root, b"usr/share/doc/sed") is None
    assert lookup(store, result.root, b"etc/app.conf") is not None
    assert lookup(store, result.root, b"usr/share/doc/newpkg/copyright") is not None
    assert run(root, "ps", "-a", "-q").stdout.strip() == ""  # the resolution container went
    assert not [r for r in all_refs(root) if r.startswith("refs/rebase/")]
    fsck_clean(root)


def test_d_continue_refuses_while_markers_remain(env):
    root, store, old, new = env

    def edit_passwd(ed, w):
        data = store.read_blob(lookup(store, read_layer(store, old).root, b"etc/passwd")[1])
        lines = data.splitlines(keepends=True)
        lines[1] = b"daemon:x:1:1:daemon:/usr/sbin:/usr/bin/zsh\n"
        put_file(ed, w, b"etc/passwd", b"".join(lines))

    commit_edit(store, old, edit_passwd, name="appm:1")
    r = run(root, "rebase", "appm:1", "--onto", "deb:new", check=False)
    assert "both modified: /etc/passwd" in r.stderr
    container = [w for w in r.stderr.split() if w.startswith("rebase-")][0]
    merged = Path(run(root, "mount", container).stdout.strip())
    text = (merged / "etc/passwd").read_bytes()
    assert b"<<<<<<< new base\n" + NEW_PASSWD_LINE + b"=======\n" in text
    r = run(root, "rebase", "--continue", check=False)
    assert r.returncode != 0 and "still has conflict markers: /etc/passwd" in r.stderr
    assert resolve(Store(str(root)), "appm:1") and "appm:1-rebased" not in run(
        root, "images").stdout
    run(root, "rebase", "--skip")  # drops the layer: the result is the new base
    assert resolve(Store(str(root)), "appm:1-rebased") == new


# -- (e) swap mode: crane's result, conflicts as warnings ----------------------------------


def test_e_swap_keeps_diff_ids_and_writes_cranes_config(env):
    root, store, old, new = env
    ids = app_layers(store, old, "appe:1")

    def touch_passwd(ed, w):
        data = store.read_blob(lookup(store, read_layer(store, old).root, b"etc/passwd")[1])
        put_file(ed, w, b"etc/passwd", data.replace(b"/usr/sbin/nologin", b"/usr/bin/true", 1))

    top = commit_edit(store, ids[-1], touch_passwd, name="appe:1", message="lock daemon")
    ids.append(top)
    store = Store(str(root))
    orig_layers = [read_layer(store, i) for i in ids]
    r = run(root, "rebase", "appe:1", "--onto", "deb:new", "--mode", "swap")
    assert "swap ignores 1 conflicts" in r.stdout and "/etc/passwd" in r.stdout
    store = Store(str(root))
    from layerctl.images import chain, oci_config

    new_chain = chain(store, resolve(store, "appe:1-rebased"))
    old_chain = chain(store, top)
    assert new_chain[0].id == new and len(new_chain) == 5
    for before, after in zip(orig_layers, new_chain[1:], strict=True):
        assert (after.source_diff_id or after.diff_id) == before.diff_id
        assert after.trailers["Rebased-From"] == before.id
        assert after.trailers["Base-Name"] == "deb:new"
        assert after.trailers["Base-Layer"] == new
    # crane: orig's config with architecture/os/os.version from the new base; history =
    # the new base's entries, then orig's entries above the old base.
    want = oci_config(old_chain)
    got = oci_config(new_chain)
    base_cfg = oci_config(chain(store, new))
    for key in ("architecture", "os", "os.version"):
        if key in base_cfg:
            want[key] = base_cfg[key]
    want["history"] = base_cfg["history"] + want["history"][1:]
    want["rootfs"]["diff_ids"] = [new_chain[0].diff_id] + want["rootfs"]["diff_ids"][1:]
    got["rootfs"]["diff_ids"] = [new_chain[0].diff_id] + [
        la.source_diff_id or la.diff_id for la in new_chain[1:]]
    assert got == want
    # The swapped passwd is the layer's, blind to the new base's edit (crane's result).
    passwd = store.read_blob(lookup(store, new_chain[-1].root, b"etc/passwd")[1])
    assert NEW_PASSWD_LINE not in passwd


# -- OLDBASE found from a previous rebase's base annotation; crash safety ---------------


def test_second_rebase_finds_base_from_annotation(env):
    root, store, old, new = env
    app_layers(store, old, "appf:1")
    run(root, "rebase", "appf:1", "--onto", "deb:new", "--in-place")
    out = run(root, "rebase", "appf:1", "--onto", "deb:old", "--in-place").stdout
    store = Store(str(root))
    from layerctl.images import chain

    layers = chain(store, resolve(store, "appf:1"))
    assert "now at" in out and layers[0].id == old and len(layers) == 4


@pytest.mark.parametrize("point", ["rebase.write-layer#2", "rebase.save-state#2",
                                   "rebase.move-tag", "rebase.cleanup"])
def test_kill_during_rebase_leaves_old_or_new(env, point):
    root, store, old, new = env
    app_layers(store, old, "appk:1")
    refs_before = all_refs(root)
    r = run(root, "rebase", "appk:1", "--onto", "deb:new", "--in-place", check=False,
            env={"LAYERCTL_CRASH_AT": point})
    assert r.returncode == KILLED, r.stderr
    fsck_clean(root)
    after = all_refs(root)
    tag = "refs/images/appk/_tags/1"
    store = Store(str(root))
    if after[tag] != refs_before[tag]:  # new: a whole rebased chain on the new base
        from layerctl.images import chain

        layers = chain(store, after[tag])
        assert layers[0].id == new and len(layers) == 4
    assert {k: v for k, v in after.items() if not k.startswith(("refs/rebase/", tag))} == {
        k: v for k, v in refs_before.items() if k != tag}
    run(root, "rebase", "--abort")
    assert all_refs(root) == refs_before
    fsck_clean(root)


def test_kill_before_the_resolution_container_exists(env):
    root, store, old, new = env

    def clash(ed, w):
        data = store.read_blob(lookup(store, read_layer(store, old).root, b"etc/passwd")[1])
        put_file(ed, w, b"etc/passwd", data.replace(b"/usr/sbin/nologin", b"/bin/zsh", 1))

    commit_edit(store, old, clash, name="apps:1")
    refs_before = all_refs(root)
    r = run(root, "rebase", "apps:1", "--onto", "deb:new", check=False,
            env={"LAYERCTL_CRASH_AT": "create.set-base"})
    assert r.returncode == KILLED
    fsck_clean(root)
    r = run(root, "rebase", "--continue", check=False)
    assert r.returncode == 1 and "was recreated" in r.stderr
    container = [w for w in r.stderr.split() if w.startswith("rebase-")][0]
    merged = Path(run(root, "mount", container).stdout.strip())
    assert b"<<<<<<<" in (merged / "etc/passwd").read_bytes()
    run(root, "rebase", "--abort")
    assert all_refs(root) == refs_before
    assert run(root, "ps", "-a", "-q").stdout.strip() == ""


@pytest.mark.parametrize("point", ["rebase.save-state#1", "rebase.reset-container",
                                   "rebase.move-container", "rebase.cleanup"])
def test_kill_while_moving_container_then_abort_restores_it(env, point):
    root, store, old, new = env
    run(root, "create", "deb:old", "--name", "ck")
    merged = Path(run(root, "mount", "ck").stdout.strip())
    (merged / "etc/motd").write_bytes(b"changed\n")
    (merged / "opt/new").write_bytes(b"new\n")
    run(root, "umount", "ck")
    refs_before = all_refs(root)
    status_before = run(root, "status", "ck").stdout
    r = run(root, "rebase", "ck", "--onto", "deb:new", check=False,
            env={"LAYERCTL_CRASH_AT": point})
    assert r.returncode == KILLED
    fsck_clean(root)
    run(root, "rebase", "--abort")
    assert all_refs(root) == refs_before
    assert run(root, "status", "ck").stdout == status_before
    merged = Path(run(root, "mount", "ck").stdout.strip())
    assert (merged / "etc/motd").read_bytes() == b"changed\n"
    run(root, "umount", "ck")
    # and the same rebase then completes
    run(root, "rebase", "ck", "--onto", "deb:new")
    assert run(root, "status", "ck").stdout == status_before


def test_errors_are_one_line(env):
    root, store, old, new = env
    for args, words in ((("rebase", "--continue"), "no rebase in progress"),
                        (("rebase", "deb:old", "--onto", "nosuch:1"), "no such image"),
                        (("rebase", "deb:new", "--onto", "deb:old"), "no layers above its base")):
        r = run(root, *args, check=False)
        assert r.returncode != 0 and words in r.stderr and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
