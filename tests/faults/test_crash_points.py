"""Crash safety: kill -9 *at* each named fault point (layerctl/faults.py), then check
that both fscks pass, no tag is half-moved, no pending change is lost and the same
command works again; plus stale ref locks, dead writers' temp files, half-made
containers, the store's permissions and a full disk.

`prune` does not exist yet: it has no crash points here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.layerhelpers import KILLED
from tests.paths import REPO_ROOT

# -- helpers ----------------------------------------------------------------------


def crash(cli, *args: object, point: str, env: dict | None = None) -> None:
    """Run `layerctl ARGS` and check that it died by SIGKILL at `point`."""
    r = cli(*args, check=False, env={**(env or {}), "LAYERCTL_CRASH_AT": point})
    assert r.returncode == KILLED, (
        f"`layerctl {' '.join(map(str, args))}` did not reach {point}: "
        f"exit {r.returncode}\n{r.stdout}{r.stderr}"
    )
    # Right after the kill, before anything cleans up, git already finds no fault.
    root = Path((env or {}).get("LAYERCTL_ROOT") or os.environ["LAYERCTL_ROOT"])
    if (root / "HEAD").exists():
        r = git(root, "fsck", "--strict")
        assert r.returncode == 0 and "error" not in r.stderr.lower(), r.stdout + r.stderr


def git(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "--git-dir", str(root), *args], capture_output=True, text=True)


def image_refs(root: Path) -> dict[str, str]:
    out = git(root, "for-each-ref", "--format=%(refname) %(objectname)", "refs/images").stdout
    return dict(line.split() for line in out.splitlines())


def tag_ref(name: str) -> str:
    repo, _, tag = name.partition(":")
    return f"refs/images/{repo}/_tags/{tag or 'latest'}"


def check_store(cli, root: Path, env: dict | None = None) -> None:
    """Both fscks pass, and no debris of a dead writer is left."""
    r = git(root, "fsck", "--strict")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "error" not in r.stderr.lower(), r.stderr
    out = cli("fsck", env=env).stdout
    assert out.splitlines()[-1].startswith("ok: "), out
    assert debris(root) == []


def debris(root: Path) -> list[str]:
    found = [str(p.relative_to(root)) for p in root.rglob("*.lock")
             if "containers" not in p.relative_to(root).parts]
    for d in (root / "objects", root / "objects" / "pack", root / "containers",
              root / "cache" / "layers", root / "cache" / "overlay"):
        if d.is_dir():
            found += [str(p.relative_to(root)) for p in d.iterdir()
                      if p.name.startswith(("tmp", "incoming-", ".tmp-"))]
    pack = root / "objects" / "pack"
    if pack.is_dir():
        found += [p.name for p in pack.glob("pack-*.pack") if not p.with_suffix(".idx").exists()]
    return found


def age_orphan_pack(root: Path) -> None:
    """A pack renamed into place without its index (git ignores it) is removed by the
    next writer once old enough not to be a live writer's between its two renames."""
    pack = root / "objects" / "pack"
    orphans = [p for p in pack.glob("pack-*.pack") if not p.with_suffix(".idx").exists()]
    assert len(orphans) == 1
    os.utime(orphans[0], (time.time() - 3600, time.time() - 3600))


def layer_file(cli, layer: str, path: str, env: dict | None = None) -> str:
    return cli("show", f"{layer}:{path}", env=env).stdout


@pytest.fixture
def src(tmp_path: Path) -> Path:
    d = tmp_path / "src"
    (d / "etc").mkdir(parents=True)
    (d / "etc" / "motd").write_text("one\n")
    (d / "bin").mkdir()
    (d / "bin" / "tool").write_bytes(os.urandom(200_000))  # big enough for a worker thread
    return d


@pytest.fixture
def base(cli, src: Path) -> str:
    """Image base:1 (and app:1 on it); returns its layer id."""
    layer = cli("import", src, "base:1").stdout.strip()
    cli("tag", "base:1", "app:1")
    return layer


# -- import -------------------------------------------------------------------------

IMPORT_POINTS = ["pack.rename-pack", "pack.rename-index", "import.write-layer",
                 "import.move-tag", "ref.move"]


@pytest.mark.parametrize("point", IMPORT_POINTS)
def test_import_killed(cli, store_root, base, src, tmp_path, point):
    new = tmp_path / "new"
    (new / "etc").mkdir(parents=True)
    (new / "etc" / "motd").write_text("two\n")
    (new / "data").write_bytes(os.urandom(300_000))
    crash(cli, "import", new, "app:1", point=point)
    after = image_refs(store_root)[tag_ref("app:1")]
    assert after == base, "the tag moved although the import was killed before it"
    if point == "pack.rename-index":
        age_orphan_pack(store_root)
    layer = cli("import", new, "app:1").stdout.strip()
    assert image_refs(store_root)[tag_ref("app:1")] == layer
    assert layer_file(cli, "app:1", "/etc/motd") == "two\n"
    check_store(cli, store_root)


def test_import_tar_killed_before_tag(cli, store_root, base, tmp_path):
    tar = tmp_path / "x.tar"
    subprocess.run(["tar", "-C", str(tmp_path), "-cf", str(tar), "src"], check=True)
    crash(cli, "import", tar, "app:1", point="import.move-tag")
    assert image_refs(store_root)[tag_ref("app:1")] == base
    cli("import", tar, "app:1")
    check_store(cli, store_root)


# -- commit ---------------------------------------------------------------------------

COMMIT_POINTS = ["pack.rename-pack", "pack.rename-index", "commit.write-layer",
                 "commit.move-base", "ref.move", "commit.move-tag", "tag.move", "ref.move#2"]


@pytest.fixture(params=["vfs", "overlay"])
def changed(request, cli, base):
    """Container c with /etc/motd changed and /new added; removed (and so unmounted)
    afterwards, also when the test fails."""
    if request.param == "overlay" and os.geteuid() != 0:
        pytest.skip("overlay needs root")
    cli("create", "--driver", request.param, "--name", "c", "base:1")
    try:
        rootfs = Path(cli("mount", "c").stdout.strip())
        (rootfs / "etc" / "motd").write_text("changed\n")
        (rootfs / "new").write_bytes(os.urandom(100_000))
        yield rootfs
    finally:
        cli("rm", "-f", "c", check=False)


def _base_of(cli, container: str) -> str:
    import json

    return json.loads(cli("inspect", container).stdout)[0]["BaseLayer"]


@pytest.mark.parametrize("point", COMMIT_POINTS)
def test_commit_killed(cli, store_root, base, changed, point):
    crash(cli, "commit", "c", "app:1", point=point)
    if point == "pack.rename-index":
        age_orphan_pack(store_root)
    tag = image_refs(store_root)[tag_ref("app:1")]
    now = _base_of(cli, "c")
    pending = cli("status", "c").stdout.splitlines()
    if now == base:  # the commit did not land: every change is still pending
        assert sorted(pending) == ["A /new", "C /etc/motd"]
        assert tag == base
        layer = cli("commit", "c", "app:1").stdout.strip().split()[-1]
    else:  # it landed: nothing pending, the layer has the changes, the tag old or new
        assert pending == []
        assert layer_file(cli, now, "/etc/motd") == "changed\n"
        assert tag in (base, now)
        cli("tag", now, "app:1")
        layer = now
    assert image_refs(store_root)[tag_ref("app:1")].startswith(layer[:12])
    assert layer_file(cli, "app:1", "/etc/motd") == "changed\n"
    assert cli("status", "c").stdout == ""
    check_store(cli, store_root)


def test_two_commits_to_one_tag_both_succeed(store_root, base, changed):
    """Another process moves the tag between this commit's read of it and its
    compare-and-swap: the last writer wins, as in Docker, and neither fails."""
    from layerctl import faults
    from layerctl.containers import api
    from layerctl.store.repo import Store

    other = []

    def other_commit() -> None:
        if not other:  # once: our own retry reaches the point again
            other.append(subprocess.run(
                [sys.executable, "-m", "layerctl", "tag", "base:1", "app:1"],
                capture_output=True, text=True, env=_env(store_root)))

    store = Store(str(store_root))
    with faults.armed("tag.move", other_commit):
        result = api.commit(store, "c", tag="app:1")
    assert other and other[0].returncode == 0, other
    assert image_refs(store_root)[tag_ref("app:1")] == result.layer_id


def test_commit_whose_tag_cannot_move_says_it_committed(cli, store_root, base, changed):
    """A tag held by another process for good: exit 1, and the message says the
    layer was committed (the container moved on; nothing pending is lost)."""
    lock = store_root / (tag_ref("app:1") + ".lock")
    from layerctl import faults
    from layerctl.containers import api
    from layerctl.errors import TagNotMoved
    from layerctl.store.repo import Store

    def git_holds_the_tag() -> None:
        lock.write_text("")  # no layerctl mark, fresh: another live process's lock

    store = Store(str(store_root))
    with faults.armed("commit.move-tag", git_holds_the_tag), pytest.raises(TagNotMoved) as e:
        api.commit(store, "c", tag="app:1")
    now = _base_of(cli, "c")
    assert now != base
    assert str(e.value) == (f"committed container c as layer {now[:12]}, but tag app:1 is "
                            "locked by another process; try again; tag it with "
                            f"`layerctl tag {now[:12]} app:1`")
    assert TagNotMoved.exit_code == 1
    assert cli("status", "c").stdout == ""
    lock.unlink()


def test_import_whose_tag_moved_meanwhile_says_it_imported(store_root, base, src):
    """`import` moves its tag only from the value it saw: another process tagging in
    between makes it fail, saying what landed and how to tag it."""
    from layerctl import faults
    from layerctl.errors import TagNotMoved
    from layerctl.images import parse_name
    from layerctl.importer import import_directory
    from layerctl.store.repo import Store

    moved = []

    def another_tag() -> None:
        moved.append(subprocess.run([sys.executable, "-m", "layerctl", "rmi", "app:1"],
                                    capture_output=True, text=True, env=_env(store_root)))

    (src / "etc" / "motd").write_text("new\n")
    store = Store(str(store_root))
    with faults.armed("import.move-tag", another_tag), pytest.raises(TagNotMoved) as e:
        import_directory(store, str(src), parse_name("app:1"), "me <me@x>")
    store.close()
    assert moved[0].returncode == 0, moved[0].stderr
    text = str(e.value)
    assert text.startswith("imported layer ")
    layer = text.split()[2].rstrip(",")
    assert text == (f"imported layer {layer}, but tag app:1 was moved by another process "
                    f"meanwhile; tag it with `layerctl tag {layer} app:1`")
    assert tag_ref("app:1") not in image_refs(store_root)


def _env(root: Path) -> dict:
    repo = REPO_ROOT
    return dict(os.environ, LAYERCTL_ROOT=str(root), PYTHONPATH=str(repo))


# -- tag, rmi -----------------------------------------------------------------------


@pytest.mark.parametrize("point", ["tag.move", "ref.lock", "ref.move", "ref.logged"])
def test_tag_killed(cli, store_root, base, src, tmp_path, point):
    """Killed anywhere in a tag move: the tag holds the old or the new layer and the
    next writer goes ahead at once (ref.logged: the new value was written and logged,
    not yet renamed; a lock holding it used to block the tag for LOCK_AGE)."""
    (src / "etc" / "motd").write_text("other\n")
    other = cli("import", src, "other:1").stdout.strip()
    crash(cli, "tag", "other:1", "app:1", point=point)
    assert image_refs(store_root)[tag_ref("app:1")] in (base, other)
    cli("tag", "other:1", "app:1")  # the next writer clears a dead writer's lock
    assert image_refs(store_root)[tag_ref("app:1")] == other
    check_store(cli, store_root)


def test_rmi_killed(cli, store_root, base):
    crash(cli, "rmi", "app:1", point="ref.delete")
    assert image_refs(store_root).get(tag_ref("app:1")) in (base, None)
    cli("rmi", "app:1")
    assert tag_ref("app:1") not in image_refs(store_root)
    assert tag_ref("base:1") in image_refs(store_root)
    check_store(cli, store_root)


# -- stale and live ref locks ----------------------------------------------------------


def test_stale_lock_without_mark_is_cleared_once_old(cli, store_root, base, src):
    """What dulwich (or git) leaves when killed mid-update: a `.lock` holding the new
    id. Old enough, it is a dead writer's: the next tag clears it; fsck too."""
    lock = store_root / (tag_ref("app:1") + ".lock")
    lock.write_text(base + "\n")
    old = time.time() - 600
    os.utime(lock, (old, old))
    cli("tag", "base:1", "app:2")
    cli("tag", "base:1", "app:1")  # was: "locked by another layerctl process" forever
    assert not lock.exists()

    lock.write_text(base + "\n")
    os.utime(lock, (old, old))
    out = cli("fsck").stdout
    assert f"removed debris of a killed process: {tag_ref('app:1')}.lock" in out
    assert not lock.exists()


def test_young_foreign_lock_is_respected(cli, store_root, base):
    lock = store_root / (tag_ref("app:1") + ".lock")
    lock.write_text("")  # as `git update-ref` holds it, for a moment
    r = cli("tag", "base:1", "app:1", check=False)
    assert r.returncode == 1
    assert r.stderr == "layerctl: tag app:1 is locked by another process; try again\n"
    cli("fsck")
    assert lock.exists()


def test_lock_of_a_live_layerctl_is_respected(cli, store_root, base, src):
    """A layerctl process that holds a ref lock (here: stopped at the point where it
    holds it) makes others fail with the clear "locked" error; fsck leaves it alone."""
    from layerctl import faults
    from layerctl.images import parse_name, set_tag
    from layerctl.store.repo import Store

    seen = []

    def others_try() -> None:
        seen.append(subprocess.run([sys.executable, "-m", "layerctl", "tag", "base:1", "app:1"],
                                   capture_output=True, text=True, env=_env(store_root)))
        seen.append(subprocess.run([sys.executable, "-m", "layerctl", "fsck"],
                                   capture_output=True, text=True, env=_env(store_root)))

    (src / "etc" / "motd").write_text("other\n")
    other = cli("import", src, "other:1").stdout.strip()
    store = Store(str(store_root))
    with faults.armed("ref.move", others_try):
        set_tag(store, parse_name("app:1"), other, expected=base)
    store.close()
    tag, fsck = seen
    assert (tag.returncode, tag.stderr) == (1, "layerctl: tag app:1 is locked by layerctl "
                                               f"process {os.getpid()}; try again\n")
    assert fsck.returncode == 0 and "removed" not in fsck.stdout, fsck.stdout


# -- dead writers' temporary files ------------------------------------------------------


def test_temp_pack_of_killed_writer_is_removed(cli, store_root, base, src):
    (src / "data").write_bytes(os.urandom(100_000))  # something new to write
    crash(cli, "import", src, "x:1", point="pack.rename-pack")
    pack = store_root / "objects" / "pack"
    left = [p.name for p in pack.iterdir() if p.name.startswith("tmp_")]
    assert left, "the killed import left no temporary pack to clean"
    cli("import", src, "x:1")  # the next writer removes it
    assert not [p.name for p in pack.iterdir() if p.name.startswith("tmp_")]


def test_foreign_temp_packs_removed_by_fsck_once_old(cli, store_root, base):
    """dulwich's fetch leaves objects/tmp_pack_* and objects/pack/tmp*.pack, with no
    pid in the name: removed once untouched for an hour, kept while fresh."""
    old_one = store_root / "objects" / "tmp_pack_abc123"
    old_two = store_root / "objects" / "pack" / "tmpxyz.pack"
    fresh = store_root / "objects" / "tmp_pack_fresh1"
    for p in (old_one, old_two, fresh):
        p.write_bytes(b"PACK")
    hours_ago = time.time() - 7200
    for p in (old_one, old_two):
        os.utime(p, (hours_ago, hours_ago))
    cli("fsck")
    assert not old_one.exists() and not old_two.exists()
    assert fresh.exists()
    fresh.unlink()


@pytest.mark.parametrize("point", ["pack.rename-index", "load.land-packs"])
def test_staging_dir_of_killed_load_is_removed(cli, store_root, base, tmp_path, point):
    archive = tmp_path / "a.tar"
    cli("save", "-o", archive, "app:1")
    other = tmp_path / "other"
    env = {"LAYERCTL_ROOT": str(other)}
    crash(cli, "load", "-i", archive, point=point, env=env)
    staged = [p for p in (other / "objects").iterdir() if p.name.startswith("incoming-")]
    assert staged
    out = cli("fsck", env=env).stdout
    assert "removed debris of a killed process: objects/incoming-" in out
    assert debris(other) == []


# -- load, pull, fetch ----------------------------------------------------------------

LOAD_POINTS = ["pack.rename-index", "load.land-packs", "load.write-layers", "load.move-tag",
               "ref.move", "load.move-tag#2", "ref.move#2"]


@pytest.fixture
def two_layers(cli, base) -> str:
    """app:2: a second layer on base:1 (committed from a vfs container); its id."""
    cli("create", "--driver", "vfs", "--name", "maker", "base:1")
    rootfs = Path(cli("mount", "maker").stdout.strip())
    (rootfs / "etc" / "motd").write_text("two\n")
    top = cli("commit", "-m", "second", "maker", "app:2").stdout.strip()
    cli("rm", "-f", "maker")
    return top


@pytest.mark.parametrize("point", LOAD_POINTS)
def test_load_killed(cli, store_root, base, two_layers, tmp_path, point):
    """An archive of two images (app:2 on app:1's layer): a kill between the two tags
    leaves the first complete, never a tag on a partial chain."""
    archive = tmp_path / "a.tar"
    cli("save", "-o", archive, "app:1", "app:2")
    other = tmp_path / "other"
    env = {"LAYERCTL_ROOT": str(other)}
    crash(cli, "load", "-i", archive, point=point, env=env)
    refs = image_refs(other)
    if point.endswith("#2"):
        assert len(refs) == 1, refs
    else:
        assert refs == {}
    expected = {tag_ref("app:1"): base, tag_ref("app:2"): two_layers}
    assert all(expected[name] == value for name, value in refs.items())
    cli("load", "-i", archive, env=env)
    assert image_refs(other) == expected
    assert layer_file(cli, "app:2", "/etc/motd", env=env) == "two\n"
    check_store(cli, other, env)


@pytest.mark.needs_tool("docker-registry")
@pytest.mark.parametrize("point", ["pull.move-progress-ref", "ref.move",
                                   "pull.move-progress-ref#2", "ref.move#2", "pull.move-tag",
                                   "ref.move#3"])
def test_pull_killed(cli, store_root, base, two_layers, registry, tmp_path, point):
    """A two-layer pull killed at each step: no tag until the end, the layers that
    landed are kept (refs/pull/…), and the next pull completes it."""
    ref = f"{registry.host}/app:2"
    cli("push", "app:2", ref)
    other = tmp_path / "other"
    env = {"LAYERCTL_ROOT": str(other)}
    crash(cli, "pull", ref, point=point, env=env)
    assert image_refs(other) == {}
    out = cli("pull", ref, env=env).stdout
    if point in ("ref.move#2", "pull.move-progress-ref#2", "pull.move-tag", "ref.move#3"):
        assert "Already exists" in out  # the first layer landed before the kill: kept
    assert layer_file(cli, ref, "/etc/motd", env=env) == "two\n"
    assert git(other, "for-each-ref", "refs/pull").stdout == ""
    check_store(cli, other, env)


@pytest.mark.parametrize("point", ["fetch.move-ref", "ref.move", "fetch.move-ref#2",
                                   "ref.move#2"])
def test_fetch_killed(cli, store_root, base, two_layers, tmp_path, point):
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    cli("push", "--git", bare)
    other = tmp_path / "other"
    env = {"LAYERCTL_ROOT": str(other)}
    crash(cli, "fetch", bare, point=point, env=env)
    expected = image_refs(store_root)
    refs = image_refs(other)
    assert len(refs) == (1 if point.endswith("#2") else 0)
    assert all(expected[name] == value for name, value in refs.items())
    cli("fetch", bare, env=env)
    assert image_refs(other) == expected
    check_store(cli, other, env)


# -- containers ------------------------------------------------------------------------

CREATE_POINTS = [(p, d) for d in ("overlay", "vfs") for p in (
    "create.publish-state", "create.reserve-name", "create.set-base",
    "create.prepare-driver", "create.mark-complete")] + [
    ("layerdir.write", "overlay"), ("layerdir.rename", "overlay")]


@pytest.mark.needs_root
@pytest.mark.parametrize(("point", "driver"), CREATE_POINTS)
def test_create_killed(cli, store_root, base, point, driver):
    crash(cli, "create", "--driver", driver, "--name", "c1", "base:1", point=point)
    if point == "create.publish-state":  # nothing but a temporary dir: fsck removes it
        tmp = [p.name for p in (store_root / "containers").iterdir() if p.name[0] == "."]
        assert len(tmp) == 1
        assert f"removed debris of a killed process: containers/{tmp[0]}" in cli("fsck").stdout
    ps = cli("ps", "-a")  # no traceback, whatever the state
    rows = [line for line in ps.stdout.splitlines()[1:] if line.split()[-1] == "c1"]
    assert len(rows) <= 1
    if rows:  # listed only as broken, with the way out
        assert "Broken: its create was interrupted (rm it)" in rows[0]
        assert "Broken" in cli("ps").stdout  # shown even without -a
        short = rows[0].split()[0]
        r = cli("status", short, check=False)  # by name too, if it got that far
        assert r.returncode == 1 and r.stdout == ""
        assert r.stderr == ("layerctl: container c1 is broken (its create was interrupted); "
                            f"remove it with `layerctl rm {short}`\n")
        assert (f"note: container c1 is broken (its create was interrupted); remove it with "
                f"`layerctl rm {short}`") in cli("fsck").stdout
        cli("rm", short)
        assert cli("ps", "-a").stdout.splitlines()[1:] == []
    else:
        r = cli("status", "c1", check=False)
        assert (r.returncode, r.stderr) == (1, "layerctl: no such container: c1\n")
    cli("create", "--driver", driver, "--name", "c1", "base:1")
    assert cli("status", "c1").stdout == ""  # no invented changes
    cli("rm", "c1")
    check_store(cli, store_root)


@pytest.mark.needs_root
@pytest.mark.parametrize("point", ["create.prepare-driver", "create.mark-complete"])
def test_create_takes_over_the_name_of_a_broken_container(cli, store_root, base, point):
    crash(cli, "create", "--driver", "vfs", "--name", "c1", "base:1", point=point)
    assert "Broken" in cli("ps", "-a").stdout
    cli("create", "--driver", "vfs", "--name", "c1", "base:1")  # was: name in use, forever
    out = cli("ps", "-a").stdout
    assert "Broken" not in out
    assert [line.split()[-1] for line in out.splitlines()[1:]] == ["c1"]
    assert cli("status", "c1").stdout == ""
    check_store(cli, store_root)


def _mounts_under(path: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if p.startswith(str(path) + "/")]


@pytest.mark.needs_root
@pytest.mark.parametrize("then", ["create", "fsck"])
def test_overlay_probe_left_mounted_is_unmounted(cli, store_root, base, then):
    """create probes overlay with a real mount; killed before unmounting it, the
    mount and its dirs are removed by the next create or by fsck."""
    try:
        crash(cli, "create", "--name", "c1", "base:1", point="overlay.unmount-probe")
        assert len(_mounts_under(store_root)) == 1
        if then == "create":
            cli("create", "--name", "c1", "base:1")
            cli("rm", "c1")
        else:
            assert "removed debris of a killed process: cache/probe/.probe-" in cli("fsck").stdout
        assert _mounts_under(store_root) == []
        assert list((store_root / "cache" / "probe").iterdir()) == []
    finally:
        for point in _mounts_under(store_root):
            subprocess.run(["umount", "-l", point], check=False)


@pytest.mark.parametrize("point", ["rm.remove-files", "rm.delete-base", "rm.remove-state",
                                   "rm.free-name"])
def test_rm_killed(cli, store_root, base, point):
    cli("create", "--driver", "vfs", "--name", "c1", "base:1")
    crash(cli, "rm", "c1", point=point)
    ps = cli("ps", "-a").stdout
    if ps.splitlines()[1:]:
        assert "Broken: its rm was interrupted (rm it)" in ps
        cli("rm", "c1")  # the same command again
    else:
        assert cli("rm", "c1", check=False).stderr == "layerctl: no such container: c1\n"
    assert cli("ps", "-a").stdout.splitlines()[1:] == []
    assert not any(r.startswith("refs/containers/") for r in
                   git(store_root, "for-each-ref", "--format=%(refname)").stdout.split())
    cli("create", "--driver", "vfs", "--name", "c1", "base:1")
    cli("rm", "c1")
    check_store(cli, store_root)


# -- permissions (Docker's CVE-2021-41091) ---------------------------------------------


@pytest.fixture
def open_parent():
    """A world-traversable directory (pytest's own tmp is 0700), removed afterwards."""
    d = tempfile.mkdtemp(prefix="layerctl-perm-", dir="/tmp")
    os.chmod(d, 0o755)
    try:
        yield Path(d)
    finally:
        subprocess.run(["rm", "-rf", d], check=False)


def _as_nobody(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
                           *argv], capture_output=True, text=True)


@pytest.mark.needs_root
@pytest.mark.needs_tool("setpriv")
def test_other_users_cannot_enter_the_store(cli, open_parent, src):
    root = open_parent / "store"
    env = {"LAYERCTL_ROOT": str(root)}
    cli("import", src, "app:1", env=env)
    cli("create", "--name", "c", "app:1", env=env)
    try:
        layer_dirs = root / "cache" / "overlay"
        lower = next(p for p in layer_dirs.iterdir() if p.name != "l") / "diff"
        assert (lower / "bin" / "tool").exists()  # the layer dir holds it
        assert _as_nobody("true").returncode == 0
        r = _as_nobody("stat", str(lower / "bin" / "tool"))
        assert r.returncode != 0 and "Permission denied" in r.stderr
        for d in ("", "cache", "containers", "runtime"):
            assert (root / d).stat().st_mode & 0o777 == 0o700, d
    finally:
        cli("rm", "-f", "c", env=env)


@pytest.mark.needs_root
@pytest.mark.needs_tool("setpriv")
def test_existing_store_is_made_private_on_open(cli, open_parent, src):
    root = open_parent / "store"
    env = {"LAYERCTL_ROOT": str(root)}
    cli("import", src, "app:1", env=env)
    for d in ("", "cache", "containers", "runtime"):
        os.chmod(root / d, 0o755)  # as every store made before this change
    assert _as_nobody("ls", str(root / "cache")).returncode == 0
    cli("images", env=env)
    assert _as_nobody("ls", str(root / "cache")).returncode != 0
    assert root.stat().st_mode & 0o777 == 0o700


@pytest.mark.timeout(300)
def test_run_works_in_a_private_store(cli_deb, store_root):
    assert store_root.stat().st_mode & 0o777 == 0o700
    r = cli_deb("run", "--rm", "-u", "nobody", "deb", "sh", "-c", "id -u; ls / >/dev/null")
    assert r.stdout == "65534\n"


# -- a full disk ------------------------------------------------------------------------


@pytest.fixture
def tiny_fs(tmp_path):
    """A 2 MiB tmpfs, unmounted afterwards even when the test fails."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs")
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _no_space(r: subprocess.CompletedProcess, root: Path) -> None:
    """Exit 1 and one error line (after any progress lines), no traceback."""
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("layerctl:")]
    assert errors == [f"layerctl: no space left on the store's filesystem ({root})"], r.stderr
    assert r.stderr.endswith(errors[0] + "\n")


@pytest.mark.needs_root
def test_import_on_a_full_disk(cli, tiny_fs, tmp_path):
    root = tiny_fs / "store"
    env = {"LAYERCTL_ROOT": str(root)}
    big = tmp_path / "big"
    big.mkdir()
    (big / "a").write_bytes(os.urandom(1_500_000))
    (big / "b").write_bytes(os.urandom(1_500_000))
    _no_space(cli("import", big, "big:1", check=False, env=env), root)
    assert image_refs(root) == {}
    check_store(cli, root, env)
    small = tmp_path / "small"
    small.mkdir()
    (small / "x").write_text("x\n")
    cli("import", small, "small:1", env=env)  # nothing of the failed import is left


@pytest.mark.needs_root
def test_commit_on_a_full_disk(cli, tiny_fs, tmp_path):
    root = tiny_fs / "store"
    env = {"LAYERCTL_ROOT": str(root)}
    small = tmp_path / "small"
    small.mkdir()
    (small / "x").write_text("x\n")
    cli("import", small, "small:1", env=env)
    cli("create", "--driver", "vfs", "--name", "c", "small:1", env=env)
    rootfs = Path(cli("mount", "c", env=env).stdout.strip())
    (rootfs / "big").write_bytes(os.urandom(1_200_000))
    _no_space(cli("commit", "c", "small:2", check=False, env=env), root)
    assert cli("status", "c", env=env).stdout == "A /big\n"
    assert tag_ref("small:2") not in image_refs(root)
    check_store(cli, root, env)
    (rootfs / "big").unlink()
    (rootfs / "x").write_text("y\n")
    cli("commit", "c", "small:2", env=env)


@pytest.mark.needs_root
@pytest.mark.parametrize("driver", ["overlay", "vfs"])
def test_create_on_a_full_disk(cli, tiny_fs, tmp_path, driver):
    """The checkout (vfs rootfs, or overlay's lower dir) does not fit: one line, and
    neither a container nor a half-extracted lower dir is left."""
    root = tiny_fs / "store"
    env = {"LAYERCTL_ROOT": str(root)}
    src = tmp_path / "src"
    src.mkdir()
    (src / "big").write_bytes(os.urandom(1_100_000))
    cli("import", src, "big:1", env=env)
    _no_space(cli("create", "--driver", driver, "--name", "c", "big:1", check=False, env=env),
              root)
    assert cli("ps", "-a", env=env).stdout.splitlines()[1:] == []
    if driver == "overlay":  # no layer dir, not even a half-written one
        dirs = root / "cache" / "overlay"  # (a failed build removes it if it left it empty)
        assert not dirs.exists() or [p for p in dirs.iterdir() if p.name != "l"] == []
    check_store(cli, root, env)
    assert cli("create", "--driver", driver, "--name", "c", "big:1", check=False,
               env=env).returncode == 1  # still no room, still the same clear line


@pytest.mark.needs_root
def test_load_on_a_full_disk(cli, store_root, tiny_fs, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "big").write_bytes(os.urandom(2_500_000))
    cli("import", src, "big:1")
    archive = tmp_path / "a.tar"
    cli("save", "-o", archive, "big:1")
    root = tiny_fs / "store"
    env = {"LAYERCTL_ROOT": str(root)}
    _no_space(cli("load", "-i", archive, check=False, env=env), root)
    assert image_refs(root) == {}
    check_store(cli, root, env)


@pytest.mark.needs_root
@pytest.mark.parametrize("point", ["create.reserve-name", "create.mark-complete"])
def test_tui_shows_a_broken_container_and_removes_it(cli, store_root, base, point, tmp_path,
                                                    monkeypatch):
    """The containers screen lists a container a killed create left as broken (also
    one that never got its name) and removes it like any other."""
    import asyncio

    from textual.widgets import DataTable

    from layerctl.store.repo import Store
    from layerctl.tui.app import LayerctlApp
    from layerctl.tui.screens.containers import ContainersScreen
    from layerctl.tui.screens.dialogs import ConfirmDialog
    from tests.tuihelpers import wait_for

    monkeypatch.setenv("LAYERCTL_CONFIG", str(tmp_path / "config.toml"))
    cli("create", "--name", "ok", "base:1")
    crash(cli, "create", "--name", "c1", "base:1", point=point)
    store = Store(str(store_root))

    async def drive() -> None:
        app = LayerctlApp(store, container="ok")
        async with app.run_test(size=(160, 48)) as pilot:
            async def until(condition) -> None:
                await wait_for(pilot, condition)

            await pilot.press("o")
            await until(lambda: isinstance(app.screen, ContainersScreen))
            table = app.screen.query_one(DataTable)
            await until(lambda: table.row_count == 2)
            cells = [str(table.get_row_at(i)[0]) for i in range(2)]
            assert sorted(cells) == ["c1 (broken: its create was interrupted; remove it)", "ok"]
            table.move_cursor(row=cells.index(next(c for c in cells if "broken" in c)))
            await pilot.press("x")
            await until(lambda: isinstance(app.screen, ConfirmDialog))
            await pilot.press("y")
            await until(lambda: table.row_count == 1)
            assert str(table.get_row_at(0)[0]) == "ok"

    try:
        asyncio.run(drive())
    finally:
        store.close()
        cli("rm", "-f", "ok")
    assert cli("ps", "-a").stdout.splitlines()[1:] == []
    check_store(cli, store_root)


@pytest.mark.needs_root
def test_tag_and_rmi_on_a_completely_full_disk(cli, tiny_fs, tmp_path):
    """Not a page left: a ref update fails with the one line, leaves no lock behind,
    and works again once there is room."""
    root = tiny_fs / "store"
    env = {"LAYERCTL_ROOT": str(root)}
    src = tmp_path / "src"
    src.mkdir()
    (src / "x").write_text("x\n")
    layer = cli("import", src, "app:1", env=env).stdout.strip()
    filler = tiny_fs / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    _no_space(cli("tag", "app:1", "app:2", check=False, env=env), root)
    assert image_refs(root) == {tag_ref("app:1"): layer}
    assert debris(root) == []
    filler.unlink()
    cli("tag", "app:1", "app:2", env=env)
    cli("rmi", "app:1", env=env)
    assert image_refs(root) == {tag_ref("app:2"): layer}
    check_store(cli, root, env)


@pytest.mark.needs_root
def test_broken_container_whose_pid_was_reused_is_still_broken(cli, store_root, base):
    """The killed create's pid now belongs to another process (here: this test's):
    the process start time recorded with it tells them apart."""
    import json

    crash(cli, "create", "--driver", "vfs", "--name", "c1", "base:1",
          point="create.mark-complete")
    (state,) = (store_root / "containers").glob("*/state.json")
    data = json.loads(state.read_text())
    data["extra"]["incomplete"]["pid"] = os.getpid()
    state.write_text(json.dumps(data))
    assert "Broken: its create was interrupted" in cli("ps", "-a").stdout
    cli("create", "--driver", "vfs", "--name", "c1", "base:1")  # takes the name over
    assert cli("status", "c1").stdout == ""


@pytest.mark.parametrize("point", ["pack.rename-pack", "pack.rename-index", "ref.move"])
def test_fsck_and_other_writers_leave_a_live_writers_files_alone(cli, store_root, base, src,
                                                                point):
    """While an import is at `point` (this process, alive), another process's fsck
    and import run: they must not take its temporary pack, its pack without index
    yet, or its ref lock for debris."""
    from layerctl import faults
    from layerctl.images import parse_name
    from layerctl.importer import import_directory
    from layerctl.store.repo import Store

    seen = []
    other_src = src.parent / "other"
    (other_src / "etc").mkdir(parents=True)
    (other_src / "etc" / "motd").write_text("other\n")

    def others_run() -> None:
        before = sorted(p.name for p in store_root.rglob("*") if p.is_file())
        fsck = subprocess.run([sys.executable, "-m", "layerctl", "fsck"],
                              capture_output=True, text=True, env=_env(store_root))
        other = subprocess.run([sys.executable, "-m", "layerctl", "import", str(other_src),
                                "other:1"], capture_output=True, text=True,
                               env=_env(store_root))
        after = sorted(p.name for p in store_root.rglob("*") if p.is_file())
        seen.append((fsck, other, set(before) - set(after)))

    (src / "data").write_bytes(os.urandom(100_000))
    store = Store(str(store_root))
    with faults.armed(point, others_run):
        import_directory(store, str(src), parse_name("app:1"), "me <me@x>")
    store.close()
    fsck, other, gone = seen[0]
    assert fsck.returncode == 0 and "removed" not in fsck.stdout, fsck.stdout + fsck.stderr
    assert other.returncode == 0, other.stderr
    assert gone == set()
    assert layer_file(cli, "app:1", "/etc/motd") == "one\n"
    check_store(cli, store_root)
