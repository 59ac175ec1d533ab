"""`system df` and the prune commands, on real overlay mounts and a real git."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from layerctl import containers as api
from layerctl import prune
from layerctl.containers import overlayfs
from layerctl.containers import state as cstate
from layerctl.store.objects import BLOB
from layerctl.store.repo import Store
from tests.layerhelpers import commit_edit, import_dir, put_file

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_tool("git")]


def _du(*paths: Path | str) -> int:
    """`du -s -B1` over all paths at once: disk blocks, each inode once."""
    existing = [str(p) for p in paths if os.path.lexists(p)]
    if not existing:
        return 0
    out = subprocess.run(["du", "-s", "-B1", "-c", *existing], capture_output=True,
                         text=True, check=True).stdout
    return int(out.splitlines()[-1].split()[0])


def _git(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "--git-dir", str(root), *args], capture_output=True, text=True)


@pytest.fixture
def two_images(store: Store, tmp_path: Path) -> Store:
    """base:1 (a tree with a hardlink), and app:1 on it with its own layer."""
    src = tmp_path / "src"
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "big").write_bytes(os.urandom(50_000))
    os.link(src / "etc" / "big", src / "etc" / "big-link")
    (src / "small").write_text("x")
    import_dir(store, src, "base:1")
    commit_edit(store, "base:1",
                lambda e, w: put_file(e, w, b"app", os.urandom(20_000)), name="app:1")
    return store


def _cache(store: Store) -> set[str]:
    """Layer ids with a layer dir (the full checkouts are asked for by kind)."""
    return {lid for kind, lid in prune.cache_entries(store) if kind == prune.LAYER_DIR}


def _untag_app(store: Store) -> str:
    """Untag app:1 (as `rmi` does, without its freeing of the dirs); its layer id."""
    from layerctl.images import parse_name, remove_tag

    return remove_tag(store, parse_name("app:1"))


def _write_in(store: Store, ref: str, name: str, size: int) -> None:
    merged = api.mount(store, ref)
    with open(os.path.join(merged, name), "wb") as f:
        f.write(os.urandom(size))
    os.link(os.path.join(merged, name), os.path.join(merged, name + "-link"))
    api.umount(store, ref)


def test_system_df_adds_up_against_du(two_images: Store, cli) -> None:
    store = two_images
    c1, _ = api.create(store, "base:1", name="one")
    c2, _ = api.create(store, "app:1", name="two")
    _write_in(store, "one", "data", 30_000)
    _write_in(store, "two", "data", 70_000)
    api.mount(store, "two")  # active

    u = prune.usage(store)
    root = Path(store.root)
    assert u.objects_size == _du(root / "objects")
    uppers = {c.id: root / "containers" / c.id / "upper" for c in (c1, c2)}
    assert {c.container.id: c.size for c in u.containers} == {
        cid: _du(p) for cid, p in uppers.items()}
    assert sum(c.size for c in u.containers) == _du(*uppers.values())
    caches = sorted(p for p in (root / "cache" / "overlay").iterdir() if p.name != "l")
    assert len(caches) == 2 and not (root / "cache" / "layers").exists()
    assert sum(c.size for c in u.cache) == _du(*caches)
    # the image's hardlink counts once: a cache dir is about one copy of `big`
    assert all(c.size < 2 * 50_000 for c in u.cache if c.layer_id == cstate.base(store, c1))
    assert {c.container.name: c.active for c in u.containers} == {"one": "", "two": "mounted"}
    assert [c.used for c in u.cache] == [True, True]
    sizes = {str(i.name): (i.size, i.shared, i.containers) for i in u.images}
    base = sizes["base:1"][0]
    assert base >= 50_000 + 1 and sizes["app:1"] == (base + 20_000, base, 1)
    assert sizes["base:1"] == (base, base, 1)

    out = cli("system", "df").stdout.splitlines()
    assert out[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    assert out[2].split()[:3] == ["Containers", "2", "1"]
    verbose = cli("system", "df", "-v").stdout
    assert "SHARED SIZE" in verbose and "UNIQUE SIZE" in verbose and "two" in verbose


def test_container_prune_removes_stopped_keeps_mounted(two_images: Store, cli) -> None:
    store = two_images
    stopped, _ = api.create(store, "base:1", name="stopped")
    mounted, _ = api.create(store, "base:1", name="mounted")
    api.mount(store, "mounted")
    out = cli("container", "prune", "-f").stdout
    assert out.splitlines()[:2] == ["Deleted Containers:", stopped.id]
    assert "Total reclaimed space:" in out.splitlines()[-1]
    left = [c.name for c in cstate.list_containers(store)]
    assert left == ["mounted"]
    assert not os.path.exists(cstate.state_dir(store, stopped.id))
    assert os.path.ismount(os.path.join(cstate.state_dir(store, mounted.id), "merged"))


def test_image_prune_removes_unused_cache_and_with_a_unused_images(
        two_images: Store, cli) -> None:
    store = two_images
    gone, _ = api.create(store, "app:1", name="gone")
    app_layer = cstate.base(store, gone)
    api.remove(store, "gone")  # its layer dir stays: app:1 still uses it
    kept, _ = api.create(store, "base:1", name="kept")
    base_layer = cstate.base(store, kept)
    assert _cache(store) == {app_layer, base_layer}
    overlayfs.lower_dir(store, app_layer)  # a full checkout, as an older store kept

    out = cli("image", "prune", "-f").stdout
    assert f"deleted checkout: {app_layer}" in out and "layer dir" not in out
    assert _cache(store) == {app_layer, base_layer}
    assert prune.cache_entries(store) == [(prune.LAYER_DIR, lid) for lid in sorted(_cache(store))]
    tag = _git(Path(store.root), "rev-parse", "--verify", "refs/images/app/_tags/1")
    assert tag.returncode == 0

    out = cli("image", "prune", "-a", "-f").stdout
    assert "untagged: app:1" in out and "base:1" not in out
    assert f"deleted layer dir: {app_layer}" in out
    refs = _git(Path(store.root), "for-each-ref", "--format=%(refname)", "refs/images").stdout
    assert refs.split() == ["refs/images/base/_tags/1"]
    assert _cache(store) == {base_layer}


def test_system_prune_removes_what_it_reports_and_keeps_a_sound_store(
        two_images: Store, cli) -> None:
    store = two_images
    old_pack = None
    with store.pack_writer() as w:  # an object nothing reaches, written long ago
        old_blob = w.add(BLOB, b"unreferenced and old\n")
        old_pack = w.finish()
    for p in (old_pack, old_pack[: -len(".pack")] + ".idx"):
        os.utime(p, (time.time() - 7200, time.time() - 7200))
    gone, _ = api.create(store, "app:1", name="gone")
    app_layer = cstate.base(store, gone)
    kept, _ = api.create(store, "base:1", name="kept")
    api.mount(store, "kept")
    store.close()

    out = cli("system", "prune", "-a", "-f").stdout
    assert out.splitlines()[:2] == ["Deleted Containers:", gone.id]
    assert "untagged: app:1" in out and f"deleted layer dir: {app_layer}" in out
    assert "base:1" not in out and kept.id not in out
    assert [c.name for c in cstate.list_containers(store)] == ["kept"]
    assert _cache(store) == {cstate.base(store, kept)}
    fresh = Store(store.root)
    try:
        assert not fresh.has(old_blob)
    finally:
        fresh.close()
    r = _git(Path(store.root), "fsck", "--strict")
    assert r.returncode == 0 and "error" not in r.stderr.lower(), r.stdout + r.stderr
    cli("fsck")
    assert "kept" in cli("ps", "-a").stdout


def test_young_unreferenced_object_survives_system_prune(two_images: Store, cli) -> None:
    store = two_images
    with store.pack_writer() as w:  # a commit or pull that has not moved its ref yet
        young = w.add(BLOB, b"written, ref not moved yet\n")
        w.finish()
    store.close()
    cli("system", "prune", "-a", "-f")
    fresh = Store(store.root)
    try:
        assert fresh.has(young)
        assert fresh.read_blob(young) == b"written, ref not moved yet\n"
    finally:
        fresh.close()


@pytest.mark.parametrize("args", [("system", "prune"), ("container", "prune"),
                                  ("image", "prune", "-a")])
def test_prune_refuses_without_f_on_non_interactive_stdin(two_images: Store, cli,
                                                          args: tuple[str, ...]) -> None:
    store = two_images
    c, _ = api.create(store, "app:1", name="idle")
    before = (_cache(store), _git(Path(store.root), "for-each-ref").stdout)
    r = cli(*args, check=False)
    assert r.returncode != 0
    assert r.stderr.strip().count("\n") == 0 and "-f" in r.stderr, r.stderr
    assert [x.id for x in cstate.list_containers(store)] == [c.id]
    assert (_cache(store), _git(Path(store.root), "for-each-ref").stdout) == before


def test_image_prune_leaves_a_dir_a_concurrent_create_takes(two_images: Store) -> None:
    """A create that set its base ref (the first thing it does) just after prune
    listed the users gets the very same dir back, never a half-removed one."""
    from layerctl import faults

    store = two_images
    gone, _ = api.create(store, "app:1", name="gone")
    app_layer = cstate.base(store, gone)
    api.remove(store, "gone")
    _untag_app(store)
    cache = Path(store.root) / "cache" / "overlay" / app_layer
    inode = cache.stat().st_ino
    late = []

    def create_starts() -> None:  # new_container: state dir, name, base ref
        late.append(cstate.new_container(store, app_layer, app_layer, "overlay", "late"))

    with faults.armed("prune.cache-aside", create_starts):
        pruned = prune.prune_images(store)
    assert pruned.cache == [] and cache.stat().st_ino == inode
    assert (cache / "diff" / "app").is_file()
    assert not [p for p in cache.parent.iterdir() if p.name.startswith(".tmp-")]
    cstate.destroy(store, late[0])


def test_a_create_while_the_dir_is_aside_gets_a_whole_dir(two_images: Store) -> None:
    from layerctl import faults

    store = two_images
    gone, _ = api.create(store, "app:1", name="gone")
    app_layer = cstate.base(store, gone)
    api.remove(store, "gone")
    _untag_app(store)

    def create() -> None:  # finds no dir, builds its own
        api.create(store, app_layer, name="late")

    with faults.armed("prune.cache-aside", create):
        pruned = prune.prune_images(store)
    assert pruned.cache == []
    merged = Path(api.mount(store, "late"))
    assert sorted(p.name for p in merged.iterdir()) == ["app", "etc", "small"]
    assert app_layer in _cache(store)


def test_kill_during_prune_leaves_no_partial_dir(two_images: Store, cli) -> None:
    store = two_images
    gone, _ = api.create(store, "app:1", name="gone")
    app_layer = cstate.base(store, gone)
    api.remove(store, "gone")
    _untag_app(store)
    r = cli("image", "prune", "-f", check=False, env={"LAYERCTL_CRASH_AT": "prune.cache-aside"})
    assert r.returncode == -9, r.stderr
    layers = Path(store.root) / "cache" / "overlay"
    assert app_layer not in _cache(store)  # the aside dir is never used
    cli("fsck")
    assert not [p for p in layers.iterdir() if p.name.startswith(".tmp-")]
    c, _ = api.create(store, app_layer, name="again")
    assert (Path(api.mount(store, "again")) / "app").is_file()


def _on_terminal(store_root: Path, answer: str, *args: str) -> str:
    """Run `layerctl ARGS` with a pseudo-terminal as stdin, typing `answer`."""
    import pty
    import sys

    from tests.layerhelpers import cli_env
    from tests.paths import REPO_ROOT

    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "layerctl", *args], stdin=follower,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env=cli_env(store_root, REPO_ROOT), text=True)
        os.write(leader, answer.encode() + b"\n")
        out, _ = proc.communicate(timeout=60)
    finally:
        os.close(leader)
        os.close(follower)
    assert proc.returncode == 0, out
    return out


def test_prune_asks_on_a_terminal(two_images: Store, store_root: Path) -> None:
    store = two_images
    c, _ = api.create(store, "app:1", name="idle")
    out = _on_terminal(store_root, "n", "container", "prune")
    assert "WARNING! This will remove all stopped containers." in out
    assert "Are you sure you want to continue? [y/N]" in out
    assert [x.id for x in cstate.list_containers(store)] == [c.id]
    out = _on_terminal(store_root, "y", "container", "prune")
    assert f"Deleted Containers:\n{c.id}\n" in out
    assert cstate.list_containers(store) == []


def test_container_prune_vfs_driver(two_images: Store, cli) -> None:
    store = two_images
    stopped, _ = api.create(store, "base:1", name="vstopped", driver="vfs")
    mounted, _ = api.create(store, "base:1", name="vmounted", driver="vfs")
    api.mount(store, "vmounted")
    u = prune.usage(store)
    assert {c.container.name: c.size for c in u.containers} == {
        c.name: _du(Path(cstate.state_dir(store, c.id)) / "rootfs") for c in (stopped, mounted)}
    out = cli("container", "prune", "-f").stdout
    assert out.splitlines()[:2] == ["Deleted Containers:", stopped.id]
    assert [c.name for c in cstate.list_containers(store)] == ["vmounted"]


def test_prune_frees_what_only_the_undo_history_held(cli, store_root, tmp_path):
    # rmi keeps a reflog (undo can bring the tag back); a prune afterwards frees the
    # layers, as in Docker, and undo then refuses in one line, changing nothing.
    src = tmp_path / "src"
    src.mkdir()
    big = os.urandom(3 << 20)
    (src / "big").write_bytes(big)
    cli("import", src, "gone:1")
    cli("rmi", "gone:1")
    assert (store_root / "logs" / "refs" / "images").exists()
    long_ago = time.time() - 7200  # older than prune's grace for unreachable objects
    for p in (store_root / "objects").rglob("*"):
        if p.is_file():
            os.utime(p, (long_ago, long_ago))
    cli("system", "prune", "-f")
    blob = subprocess.run(["git", "hash-object", "--stdin"], input=big,
                          capture_output=True).stdout.decode().strip()
    present = subprocess.run(["git", "--git-dir", store_root, "cat-file", "-e", blob],
                             capture_output=True)
    assert present.returncode != 0, "the removed image's content survived the prune"
    bad = cli("undo", check=False)
    assert bad.returncode != 0 and bad.stderr.count("\n") == 1 and "gone" in bad.stderr
    assert cli("images", "-q").stdout.strip() == ""
    cli("fsck")
