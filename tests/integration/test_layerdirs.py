"""Issue 12: per-layer diff dirs shared on disk (layerctl/containers/layerdirs.py).

Real overlay mounts over real layer dirs; every merged dir is compared with the
image's checkout entry by entry (tests/treecompare.py), all metadata.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from layerctl import containers as api
from layerctl import prune
from layerctl.containers import layerbuild, layerdirs, layerstack, overlayfs
from layerctl.images import parse_name, resolve, set_tag
from layerctl.store.fstree import lookup
from layerctl.store.layers import read_layer
from layerctl.store.meta import DIR, FILE, SYMLINK, Meta
from layerctl.store.objects import BLOB
from layerctl.store.repo import Store
from tests.layerhelpers import checkout_of, commit_edit, import_dir, put_file, same_as_image
from tests.treecompare import compare, snapshot

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="overlay mounts need root"),
              pytest.mark.timeout(900)]

MTIME = 1_700_000_000_000_000_000


def _du(*paths: Path) -> int:
    """`du -s -B1` over `paths`: bytes on disk, each inode once."""
    out = subprocess.run(["du", "-s", "-c", "-B1", *map(str, paths)], check=True,
                         capture_output=True, text=True).stdout
    return int(out.splitlines()[-1].split()[0])


def _lowerdirs_of(merged: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == merged:
                opts = line.split(" - ", 1)[1].split()[2]
                return [o.split("=", 1)[1] for o in opts.split(",")
                        if o.startswith(("lowerdir=", "lowerdir+="))]
    raise AssertionError(f"{merged} is not mounted")


def _dir_meta(mode: int = 0o755, mtime: int = MTIME) -> Meta:
    return Meta(DIR, mode, 0, 0, mtime, 0)


# -- a small image with every kind of change --------------------------------------------


def _tricky_chain(store: Store, tmp_path: Path) -> str:
    """base -> L1 (adds, whiteouts, replaced dir, metadata, xattr) -> L2 (hardlinks
    within the layer, a link added to a group of the base, file<->dir swaps)."""
    src = tmp_path / "src"
    (src / "etc" / "keep").mkdir(parents=True)
    (src / "doc" / "apt").mkdir(parents=True)
    (src / "etc" / "hostname").write_text("base\n")
    (src / "etc" / "keep" / "a").write_text("a\n")
    (src / "doc" / "apt" / "NEWS").write_text("old news\n")
    (src / "doc" / "apt" / "README").write_text("old readme\n")
    (src / "gone").write_text("to be deleted\n")
    (src / "was-dir").mkdir()
    (src / "was-dir" / "inner").write_text("inner\n")
    (src / "was-file").write_text("file\n")
    (src / "big").write_bytes(os.urandom(10_000))
    (src / "doc" / "plain").write_text("plain\n")
    os.link(src / "big", src / "big-link")
    os.chmod(src / "etc" / "hostname", 0o640)
    os.chown(src / "etc" / "hostname", 7, 8)
    os.setxattr(src / "etc" / "keep" / "a", "user.base", b"1")
    import_dir(store, src, "tricky:0")

    def l1(e, w) -> None:
        put_file(e, w, b"etc/hostname", b"one\n", mode=0o600, uid=5, gid=6)
        e.delete(b"gone")
        e.delete(b"doc/apt")  # then re-created: an opaque dir holding only new entries
        e.set_dir(b"doc/apt", _dir_meta(0o750))
        put_file(e, w, b"doc/apt/CHANGES", b"new news\n")
        e.set_file(b"etc/keep/a", Meta(FILE, 0o4755, 0, 0, MTIME, 2,
                                       xattrs=((b"user.base", b"2"),)), w.add(BLOB, b"a\n"))
        e.set_file(b"etc/link", Meta(SYMLINK, 0o777, 0, 0, MTIME, 8), w.add(BLOB, b"hostname"))
        e.set_dir(b"etc", _dir_meta(0o711, MTIME + 5))

    commit_edit(store, "tricky:0", l1, name="tricky:1")

    def l2(e, w) -> None:
        e.delete(b"was-dir")
        put_file(e, w, b"was-dir", b"now a file\n")
        e.delete(b"was-file")
        e.set_dir(b"was-file", _dir_meta())
        put_file(e, w, b"was-file/x", b"x\n")
        blob = w.add(BLOB, b"hl\n")
        e.set_file(b"h1", Meta(FILE, 0o644, 0, 0, MTIME, 3), blob)
        e.set_file(b"h2", Meta(FILE, 0o644, 0, 0, MTIME, 3, link=b"h1"), blob)
        e.delete(b"etc/keep/a")

    return commit_edit(store, "tricky:1", l2, name="tricky:2")


def test_layer_dir_holds_only_the_changes_in_overlay2_format(store, tmp_path):
    top = _tricky_chain(store, tmp_path)
    c, _ = api.create(store, "tricky:2", name="c")
    l1 = read_layer(store, top).parent
    d1 = Path(layerdirs.diff_path(store, l1))
    names = sorted(str(p.relative_to(d1)) for p in d1.rglob("*"))
    assert names == ["doc", "doc/apt", "doc/apt/CHANGES", "etc", "etc/hostname", "etc/keep",
                     "etc/keep/a", "etc/link", "gone"]
    wh = os.lstat(d1 / "gone")
    assert wh.st_rdev == 0 and oct(wh.st_mode)[:4] == "0o20"  # a 0/0 char device
    assert os.getxattr(d1 / "doc" / "apt", "trusted.overlay.opaque") == b"y"
    d2 = Path(layerdirs.diff_path(store, top))
    assert os.getxattr(d2 / "was-file", "trusted.overlay.opaque") == b"y"
    assert (d2 / "h1").stat().st_ino == (d2 / "h2").stat().st_ino
    merged = Path(api.mount(store, "c"))
    assert len(_lowerdirs_of(str(merged))) == 3
    same_as_image(store, "tricky:2", merged, tmp_path)
    assert api.status(store, "c") == []
    for image in ("tricky:0", "tricky:1"):
        api.create(store, image, name=image.replace(":", "-"))
        same_as_image(store, image, Path(api.mount(store, image.replace(":", "-"))), tmp_path)
    # one dir per layer, shared by the three containers
    assert sorted(layerdirs.entries(store)) == sorted(layerdirs.chain_ids(store, top))
    assert not os.path.exists(store.path("cache", "layers"))


def test_a_link_added_to_a_group_of_an_older_layer_stays_one_inode(store, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_text("shared\n")
    os.link(src / "a", src / "b")
    base = import_dir(store, src, "g:0")
    meta, blob = lookup(store, read_layer(store, base).root, b"a")

    def add_member(e, w) -> None:
        e.set_file(b"c", Meta(FILE, meta.mode, meta.uid, meta.gid, meta.mtime_ns, meta.size,
                              link=b"a"), blob)

    commit_edit(store, "g:0", add_member, name="g:1")
    api.create(store, "g:1", name="g")
    merged = Path(api.mount(store, "g"))
    same_as_image(store, "g:1", merged, tmp_path)
    assert len({(merged / n).stat().st_ino for n in "abc"}) == 1
    assert api.status(store, "g") == []


def test_commit_then_create_builds_only_the_new_layer_dir(store, tmp_path):
    top = _tricky_chain(store, tmp_path)
    api.create(store, "tricky:2", name="w")
    merged = Path(api.mount(store, "w"))
    (merged / "new").write_bytes(os.urandom(5000))
    before = set(layerdirs.entries(store))
    new = api.commit(store, "w", tag="tricky:3").layer_id
    assert set(layerdirs.entries(store)) == before  # made when first needed
    api.create(store, "tricky:3", name="fresh")
    assert set(layerdirs.entries(store)) == before | {new}
    d = Path(layerdirs.diff_path(store, new))
    assert sorted(p.name for p in d.iterdir()) == ["new"]
    same_as_image(store, "tricky:3", Path(api.mount(store, "fresh")), tmp_path)
    # the committing container, remounted, stands on the new layer's dir
    api.umount(store, "w")
    merged = Path(api.mount(store, "w"))
    assert len(_lowerdirs_of(str(merged))) == 4 and api.status(store, "w") == []
    assert not os.path.exists(store.path("cache", "layers"))
    assert read_layer(store, new).parent == top


def test_graph_driver_paths_exist_and_their_mount_is_the_image(store, tmp_path, cli):
    _tricky_chain(store, tmp_path)
    gd = json.loads(cli("inspect", "tricky:2").stdout)[0]["GraphDriver"]
    assert gd["Name"] == "overlay"
    assert set(gd["Data"].values()) == {layerstack.NOT_MADE}  # said, not a missing path
    api.create(store, "tricky:2", name="c")
    data = json.loads(cli("inspect", "tricky:2").stdout)[0]["GraphDriver"]["Data"]
    lowers = data["LowerDir"].split(":")
    assert len(lowers) == 2
    for p in (*lowers, data["UpperDir"], data["WorkDir"], data["MergedDir"]):
        assert os.path.isdir(p), p
    # Mount the image's own dirs read-only (no upper): the image's checkout
    target = tmp_path / "ro"
    target.mkdir()
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={data['UpperDir']}:{data['LowerDir']}", str(target)], check=True)
    try:
        co = checkout_of(store, "tricky:2", tmp_path / "co")
        assert compare(snapshot(co), snapshot(target)) == []
    finally:
        subprocess.run(["umount", str(target)], check=True)
    cdata = json.loads(cli("inspect", "c").stdout)[0]["GraphDriver"]["Data"]
    assert cdata["UpperDir"].endswith("/upper")
    assert cdata["LowerDir"].split(":") == [data["UpperDir"], *lowers]


def test_rmi_frees_only_the_dirs_of_its_image(store, tmp_path, cli):
    top = _tricky_chain(store, tmp_path)
    api.create(store, "tricky:2", name="c")
    api.remove(store, "c")
    set_tag(store, parse_name("other:1"), read_layer(store, top).parent)  # tricky:1's layer
    cli("rmi", "tricky:2")
    assert top not in layerdirs.entries(store)
    assert set(layerdirs.entries(store)) == set(layerdirs.chain_ids(store, resolve(store,
                                                                                   "other:1")))


def test_200_layer_image(store, tmp_path):
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "base").write_text("base\n")
    import_dir(store, src, "deep:0")
    current = "deep:0"
    for i in range(1, 201):
        def edit(e, w, i=i) -> None:
            put_file(e, w, b"f%03d" % i, b"%d\n" % i)
            put_file(e, w, b"d/shared", b"layer %d\n" % i, mtime_ns=MTIME + i)
            if i % 10 == 0:
                e.delete(b"f%03d" % (i - 5))  # a whiteout over an older layer's file
            if i == 150:
                e.delete(b"d")
                e.set_dir(b"d", _dir_meta(0o700))  # opaque above the flattened part
                put_file(e, w, b"d/shared", b"after 150\n")
        commit_edit(store, current, edit, name=f"deep:{i}")
        current = f"deep:{i}"
    api.create(store, "deep:200", name="deep")
    merged = Path(api.mount(store, "deep"))
    lowers = _lowerdirs_of(str(merged))
    assert len(lowers) <= layerstack.MAX_LOWERS
    flat = lowers[-1]
    assert flat.startswith(store.path("cache", "layers") + "/")
    same_as_image(store, "deep:200", merged, tmp_path)
    assert api.status(store, "deep") == []
    (merged / "one-more").write_text("x\n")
    api.commit(store, "deep", tag="deep:201")
    api.create(store, "deep:201", name="deeper")
    merged2 = Path(api.mount(store, "deeper"))
    assert _lowerdirs_of(str(merged2))[-1] == flat  # the flattened bottom is reused
    same_as_image(store, "deep:201", merged2, tmp_path)


@pytest.mark.parametrize("point", ["layerdir.write", "layerdir.rename"])
def test_kill_during_layer_dir_build(store, tmp_path, cli, point):
    top = _tricky_chain(store, tmp_path)
    store.close()
    r = cli("create", "--name", "k", "tricky:2", check=False,
            env={"LAYERCTL_CRASH_AT": point})
    assert r.returncode == -9, r.stderr
    assert layerdirs.entries(store) == [] or top not in layerdirs.entries(store)
    debris = [p for p in Path(layerdirs.root(store)).iterdir() if p.name.startswith(".tmp-")]
    assert debris  # what the killed build left, under a name nothing mounts
    cli("fsck")
    assert not [p for p in Path(layerdirs.root(store)).iterdir() if p.name.startswith(".tmp-")]
    cli("create", "--name", "k2", "tricky:2")
    same_as_image(store, "tricky:2", Path(api.mount(store, "k2")), tmp_path)


def test_old_full_checkout_cache_is_still_read_and_pruned(store, tmp_path):
    _tricky_chain(store, tmp_path)
    l1 = resolve(store, "tricky:1")
    old = overlayfs.lower_dir(store, l1)  # what an older layerctl left in cache/layers
    api.create(store, "tricky:2", name="c")
    merged = Path(api.mount(store, "c"))
    assert _lowerdirs_of(str(merged))[-1] == old  # stands on it, builds no dir below
    assert l1 not in layerdirs.entries(store)
    same_as_image(store, "tricky:2", merged, tmp_path)
    # commit on it: the new layer's dir stacks over the old checkout
    (merged / "etc" / "added").write_text("added\n")
    new = api.commit(store, "c", tag="tricky:3").layer_id
    api.umount(store, "c")
    merged = Path(api.mount(store, "c"))
    lowers = _lowerdirs_of(str(merged))
    assert lowers[0] == layerdirs.short_path(store, new) and lowers[-1] == old
    assert api.status(store, "c") == []
    same_as_image(store, "tricky:3", merged, tmp_path)
    api.umount(store, "c")
    api.remove(store, "c")
    pruned = prune.prune_images(store)
    assert (prune.CHECKOUT, l1) in pruned.cache and not os.path.exists(old)
    api.create(store, "tricky:3", name="after")  # now built from changesets alone
    same_as_image(store, "tricky:3", Path(api.mount(store, "after")), tmp_path)
    assert l1 in layerdirs.entries(store)


# -- Debian: sharing and the commit loop --------------------------------------------------


@pytest.fixture
def deb_store(store: Store, debian_rootfs: Path) -> Store:
    import_dir(store, debian_rootfs, "deb:1")
    return store


def test_two_images_three_containers_share_one_base_dir(deb_store, tmp_path):
    store = deb_store
    for tag in ("a:1", "b:1"):
        commit_edit(store, "deb:1", lambda e, w, t=tag: put_file(
            e, w, b"opt/" + t.encode(), os.urandom(100_000)), name=tag)
    api.create(store, "a:1", name="one")
    root = Path(store.root)
    before = _du(root)
    api.create(store, "b:1", name="two")
    api.create(store, "a:1", name="three")
    grown = _du(root) - before
    assert grown <= 100_000 + 1_000_000, grown  # b's layer dir, three small state dirs
    base = resolve(store, "deb:1")
    assert sorted(layerdirs.entries(store)) == sorted(
        {base, resolve(store, "a:1"), resolve(store, "b:1")})
    m1, m2 = Path(api.mount(store, "one")), Path(api.mount(store, "two"))
    base_dir = layerdirs.short_path(store, base)
    assert _lowerdirs_of(str(m1))[-1] == _lowerdirs_of(str(m2))[-1] == base_dir
    passwd = Path(layerdirs.diff_path(store, base)) / "etc" / "passwd"
    assert (m1 / "etc/passwd").stat().st_ino == (m2 / "etc/passwd").stat().st_ino \
        == passwd.stat().st_ino  # one file on disk, seen through both images


def test_commit_walkthrough_loop_on_debian(deb_store, tmp_path, cli):
    store = deb_store
    store.close()
    image = "deb:1"
    root = Path(store.root)
    for i in range(5):
        name = f"tomcat{i}"
        cli("create", "--name", name, image)
        merged = Path(cli("mount", name).stdout.strip())
        if i == 0:  # later images are compared below, in their fresh container
            same_as_image(store, image, merged, tmp_path)
        before = _du(root)
        web = merged / "usr/local/tomcat/webapps" / f"app{i}"
        web.mkdir(parents=True)
        payload = os.urandom(300_000)
        (web / "index.war").write_bytes(payload)
        shutil.copy2(merged / "etc/passwd", web / "services")
        changed = len(payload) + (web / "services").stat().st_size
        new = f"tomcat02:1.{i}"
        cli("commit", "-a", "kuangshen", "-m", f"add webapps app{i}", name, new)
        cli("rm", "-f", name)  # its upper dir goes: the layer lives on in the store
        cli("create", "--name", f"run{i}", new)
        fresh = Path(cli("mount", f"run{i}").stdout.strip())
        assert sorted(p.name for p in (fresh / "usr/local/tomcat/webapps").iterdir()) == [
            f"app{j}" for j in range(i + 1)]
        grown = _du(root) - before
        assert grown <= 2 * changed + 1_000_000, (i, grown, changed)
        same_as_image(store, new, fresh, tmp_path)
        assert cli("status", f"run{i}").stdout.strip() == ""
        cli("rm", "-f", f"run{i}")
        image = new
    assert not (root / "cache" / "layers").exists()


def test_two_builders_of_one_layer_dir_leave_one_whole_dir(store, tmp_path):
    """A second process builds the same dir between our write and our rename: ours
    is dropped, theirs serves, nothing half-made is left."""
    from layerctl import faults

    top = _tricky_chain(store, tmp_path)
    for lid in layerdirs.chain_ids(store, top)[1:]:
        layerstack.ensure(store, lid)
    theirs = []

    def other_builder() -> None:
        if not theirs:
            theirs.append(True)
            layerbuild.build(store, top)  # the other process, done first

    with faults.armed("layerdir.rename", other_builder):
        layerstack.ensure(store, top)
    inode = os.stat(layerdirs.diff_path(store, top)).st_ino
    assert theirs and not [p for p in Path(layerdirs.root(store)).iterdir()
                           if p.name.startswith(".tmp-")]
    api.create(store, "tricky:2", name="c")
    assert os.stat(layerdirs.diff_path(store, top)).st_ino == inode
    same_as_image(store, "tricky:2", Path(api.mount(store, "c")), tmp_path)


def test_restore_and_reset_over_a_chain_of_layer_dirs(store, tmp_path):
    _tricky_chain(store, tmp_path)
    api.create(store, "tricky:2", name="c")
    merged = Path(api.mount(store, "c"))
    (merged / "etc" / "hostname").write_text("changed\n")  # from L1's dir
    (merged / "doc" / "plain").unlink()  # from the base's dir
    shutil.rmtree(merged / "doc" / "apt")  # L1's opaque dir
    assert {ch.path for ch in api.status(store, "c")} >= {b"etc/hostname", b"doc/plain",
                                                           b"doc/apt"}
    api.restore(store, "c", ["etc/hostname", "doc/plain", "doc/apt"])
    assert api.status(store, "c") == []
    same_as_image(store, "tricky:2", merged, tmp_path)
    (merged / "x").write_text("x\n")
    api.commit(store, "c", tag="tricky:3")
    _, target = api.reset(store, "c", "tricky:0")
    assert api.status(store, "c") == []
    same_as_image(store, "tricky:0", Path(api.mount(store, "c")), tmp_path)
    assert len(_lowerdirs_of(str(merged))) == 1


def test_prune_while_a_layer_dir_is_being_built_leaves_it_whole(store, tmp_path):
    """prune runs between a build's write and its rename: the temporary dir is not
    an entry (never removed half-way), and the renamed dir is complete and kept."""
    from layerctl import faults

    top = _tricky_chain(store, tmp_path)
    pruned = []

    def prune_now() -> None:
        pruned.append(prune.prune_images(store))

    with faults.armed("layerdir.rename", prune_now):
        api.create(store, "tricky:2", name="c")
    assert pruned and all(p.cache == [] for p in pruned)
    assert set(layerdirs.entries(store)) == set(layerdirs.chain_ids(store, top))
    same_as_image(store, "tricky:2", Path(api.mount(store, "c")), tmp_path)


def test_overlay_is_probed_once_per_boot(store, tmp_path):
    """create's probe mount (whose unmount syncs the filesystem) runs once; the
    success is kept with the boot id, and a stale boot id probes again."""
    from layerctl import faults

    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("f\n")
    import_dir(store, src, "p:1")
    probes = []
    with faults.armed("overlay.unmount-probe", lambda: probes.append(1)):
        api.create(store, "p:1", name="a")
        api.create(store, "p:1", name="b")
        assert len(probes) == 1
        Path(store.path("cache", "overlay-probed")).write_text("another-boot\n")
        api.create(store, "p:1", name="c")
    assert len(probes) == 2
    with open("/proc/sys/kernel/random/boot_id") as f:
        assert Path(store.path("cache", "overlay-probed")).read_text().strip() == f.read().strip()


# -- layer dirs written at load (issue 12/16: the contents are in hand then) ------------


def _loaded_store(store: Store, tmp_path: Path, cli, **kw) -> tuple[Path, Path]:
    """tricky:2 saved to an archive; returns (archive, root of an empty second store)."""
    _tricky_chain(store, tmp_path)
    archive = tmp_path / "tricky.tar"
    cli("save", "-o", archive, "tricky:2")
    other = tmp_path / "loaded"
    other.mkdir()
    return archive, other


def _layer_dir(store: Store, lid: str) -> dict:
    """A diff dir's entries; a whiteout's mtime is when it was made (as in overlay2)."""
    import dataclasses

    return {path: dataclasses.replace(e, mtime=0) if e.type == "char" else e
            for path, e in snapshot(layerdirs.diff_path(store, lid)).items()}


def _diff_dirs(store: Store, top: str) -> dict[str, dict]:
    return {lid: _layer_dir(store, lid) for lid in layerdirs.chain_ids(store, top)}


def test_load_writes_every_layer_dir_as_a_lazy_build_would(store, tmp_path, cli):
    from layerctl import faults

    archive, other = _loaded_store(store, tmp_path, cli)
    cli("load", "-q", "-i", archive, env={"LAYERCTL_ROOT": str(other)})
    loaded = Store(str(other))
    try:
        top = resolve(loaded, "tricky:2")
        chain = layerdirs.chain_ids(loaded, top)
        assert sorted(chain) == layerdirs.entries(loaded)  # every layer's dir, nothing else
        at_load = _diff_dirs(loaded, top)
        assert not [p for p in Path(layerdirs.root(loaded)).iterdir()
                    if p.name.startswith(".tmp-")]

        def no_build() -> None:
            raise AssertionError("create built a layer dir the load should have written")

        with faults.armed("layerdir.write", no_build):
            api.create(loaded, "tricky:2", name="c")
        same_as_image(loaded, "tricky:2", Path(api.mount(loaded, "c")), tmp_path)
        api.umount(loaded, "c")
        # the same dirs, entry by entry, as the lazy build from the stored changesets
        for lid in chain:
            shutil.rmtree(layerdirs.layer_path(loaded, lid))
            layerstack.ensure(loaded, lid)
        assert compare_all(at_load, _diff_dirs(loaded, top))
    finally:
        from tests.layerhelpers import release_containers

        release_containers(loaded)


def compare_all(a: dict[str, dict], b: dict[str, dict]) -> bool:
    from tests.treecompare import compare

    assert a.keys() == b.keys()
    for lid in a:
        assert compare(a[lid], b[lid]) == [], lid
    return True


@pytest.mark.parametrize("point", ["layerdir.write", "layerdir.rename#2"])
def test_kill_during_load_leaves_no_used_half_dir(store, tmp_path, cli, point):
    archive, other = _loaded_store(store, tmp_path, cli)
    env = {"LAYERCTL_ROOT": str(other)}
    r = cli("load", "-q", "-i", archive, check=False, env={**env, "LAYERCTL_CRASH_AT": point})
    assert r.returncode == -9, r.stderr
    loaded = Store(str(other))
    top_dir = Path(layerdirs.root(loaded))
    assert [p for p in top_dir.iterdir() if p.name.startswith(".tmp-")]  # left by the kill
    for lid in layerdirs.entries(loaded):  # a dir under a layer's name is a whole one
        layerstack.ensure(loaded, lid)
        assert compare_all({lid: _layer_dir(loaded, lid)},
                           _rebuilt(loaded, lid, tmp_path))
    assert "tricky" not in cli("images", env=env).stdout
    cli("fsck", env=env)
    assert not [p for p in top_dir.iterdir() if p.name.startswith(".tmp-")]
    cli("load", "-q", "-i", archive, env=env)
    cli("create", "--name", "k", "tricky:2", env=env)
    try:
        merged = Path(cli("mount", "k", env=env).stdout.strip())
        same_as_image(Store(str(other)), "tricky:2", merged, tmp_path)
    finally:
        cli("umount", "k", env=env, check=False)


def _rebuilt(store: Store, lid: str, tmp_path: Path) -> dict[str, dict]:
    """`lid`'s dir as the lazy build makes it, in a scratch copy of the cache."""
    saved = tmp_path / f"saved-{lid}"
    os.rename(layerdirs.layer_path(store, lid), saved)
    try:
        layerbuild.build(store, lid)
        return {lid: _layer_dir(store, lid)}
    finally:
        shutil.rmtree(layerdirs.layer_path(store, lid))
        os.rename(saved, layerdirs.layer_path(store, lid))


def test_load_failing_at_a_later_layer_leaves_no_layer_dir(store, tmp_path, cli):
    """The first layers' dirs are written before a later layer is found corrupt: the
    failed load leaves none of them, named or temporary."""
    import io
    import tarfile

    archive, other = _loaded_store(store, tmp_path, cli)
    with tarfile.open(archive) as src:
        manifest = json.loads(src.extractfile("manifest.json").read())
        last = manifest[0]["Layers"][-1]
        members = [(m, src.extractfile(m).read() if m.isfile() else None)
                   for m in src.getmembers()]
    bad = tmp_path / "bad.tar"
    with tarfile.open(bad, "w") as out:
        for m, data in members:
            if m.name == last:
                data = data.replace(b"now a file\n", b"now a fil3\n")  # content, same size
            out.addfile(m, io.BytesIO(data) if data is not None else None)
    r = cli("load", "-q", "-i", bad, check=False, env={"LAYERCTL_ROOT": str(other)})
    assert r.returncode != 0 and "mismatch" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    top_dir = other / "cache" / "overlay"
    assert not top_dir.exists() or not [p for p in top_dir.iterdir() if p.name != "l"]
