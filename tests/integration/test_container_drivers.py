"""The container driver registry (containers/drivers/): every driver name a container
record can be written with has a driver, and a record naming a driver this layerctl
does not know is one clear error, not a traceback or a guess."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

import layerctl.containers as C
from layerctl.containers import stash
from layerctl.containers import state as cstate
from layerctl.containers.drivers import DRIVERS, choose, driver_for, external
from layerctl.containers.writeback import writing_back
from layerctl.errors import Conflict, LayerctlError
from tests.layerhelpers import import_dir

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="overlay mounts need root")


@pytest.fixture
def image(store, tmp_path):
    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "etc" / "hostname").write_text("box\n")
    return import_dir(store, rootfs, "img:1")


def test_every_name_create_accepts_has_a_driver():
    from layerctl.cli.containers import create_cmd

    option = next(p for p in create_cmd.params if p.name == "driver")
    assert set(option.type.choices) == set(DRIVERS)


@pytest.mark.parametrize("name", sorted(DRIVERS))
def test_a_container_of_each_driver_gets_that_driver(store, image, name):
    if name == "overlay" and os.geteuid() != 0:
        pytest.skip("overlay mounts need root")
    C.create(store, "img:1", name="c", driver=name)
    stored = cstate.resolve(store, "c")  # as read back from its state.json
    assert stored.driver == name
    driver = driver_for(stored)
    assert driver.name == name and driver.owned
    assert C.status(store, "c") == []
    # The driver's dirs are the ones the container's files are in: a file put into
    # its top dir is a change, seen whole under root once mounted.
    with open(os.path.join(driver.top(store, stored), "added"), "w") as f:
        f.write("new\n")
    assert [ch.path for ch in C.status(store, "c")] == [b"added"]
    try:
        root = C.mount(store, "c")
        now = cstate.resolve(store, "c")  # a vfs mount is a mark in the record
        assert root == C.root_dir(store, now) and C.is_mounted(store, now)
        assert open(os.path.join(root, "etc", "hostname")).read() == "box\n"
        assert open(os.path.join(root, "added")).read() == "new\n"
        data = C.inspect_container(store, "c")["GraphDriver"]["Data"]
        assert data["MergedDir"] == root
    finally:
        C.umount(store, "c")
    assert not C.is_mounted(store, cstate.resolve(store, "c"))
    C.remove(store, "c")
    assert not os.path.exists(cstate.state_dir(store, stored.id))


def test_the_default_driver_is_a_registered_one(store):
    chosen, _notice = choose(store, None)
    assert chosen in DRIVERS


@needs_root
def test_a_tracked_record_gets_the_read_only_driver(store, image, tmp_path):
    upper = tmp_path / "engine-upper"
    (upper / "etc").mkdir(parents=True)
    (upper / "etc" / "motd").write_text("hello\n")
    c = external.create(store, "img:1", image, "tracked", "tracks podman container web",
                        "podman", "abc", "web", {"UpperDir": str(upper)})
    stored = cstate.resolve(store, "tracked")
    assert stored.driver in DRIVERS  # an overlay record, with the engine's dirs
    driver = driver_for(stored)
    assert not driver.owned and driver.top(store, stored) == str(upper)
    assert b"etc/motd" in [ch.path for ch in C.status(store, "tracked")]  # the engine's upper dir
    assert not C.is_mounted(store, c)
    refused = {
        "mount": lambda: C.mount(store, "tracked"),
        "unmount": lambda: C.umount(store, "tracked"),
        "reset": lambda: C.reset(store, "tracked"),
        "restore files of": lambda: C.restore(store, "tracked", ["/etc/motd"]),
        "stash changes of": lambda: stash.push(store, "tracked"),
        # what `run` would mount: a tracked container's root is the engine's to show
        "mount ": lambda: C.root_dir(store, stored),
    }
    for action, call in refused.items():
        with pytest.raises(Conflict, match=f"tracks podman container web: {action.strip()} "
                                           "it with podman"):
            call()
    with cstate.locked(store, stored), pytest.raises(Conflict, match="with podman"):
        with writing_back(store, stored, "undo", "undone"):  # undo's write back
            pass
    assert (upper / "etc" / "motd").read_text() == "hello\n"
    gd = C.inspect_container(store, "tracked")["GraphDriver"]
    assert gd["Data"]["UpperDir"] == str(upper) and gd["Data"]["MergedDir"] == ""
    result = C.commit(store, "tracked", "from the engine")  # reading is allowed
    assert b"etc/motd" in [ch.path for ch in result.changes]
    C.remove(store, "tracked")
    assert (upper / "etc" / "motd").read_text() == "hello\n"  # the engine's files stay
    assert cstate.find(store, "tracked") is None


def _relabel(store, name: str, driver: str) -> None:
    """Write `driver` into the container's state.json, as a hand edit or a newer
    layerctl would have."""
    c = cstate.resolve(store, name, broken_ok=True)
    path = os.path.join(cstate.state_dir(store, c.id), "state.json")
    with open(path) as f:
        data = json.load(f)
    data["driver"] = driver
    with open(path, "w") as f:
        json.dump(data, f)


@needs_root
def test_an_unknown_driver_is_a_clear_error(store, image):
    """A record naming a driver this layerctl does not know is a broken container:
    every operation refuses in one line, nothing is half done, and `rm` removes it
    once nothing is mounted below it."""
    from layerctl.containers.drivers import driver_for

    C.create(store, "img:1", name="odd", driver="vfs")
    _relabel(store, "odd", "zfs")
    c = cstate.resolve(store, "odd", broken_ok=True)
    assert cstate.broken(c) == "its driver 'zfs' is unknown to this layerctl"
    message = (r"container odd is broken \(its driver 'zfs' is unknown to this layerctl\); "
               rf"remove it with `layerctl rm {c.short_id}`")
    for call in (lambda: C.status(store, "odd"), lambda: C.mount(store, "odd"),
                 lambda: C.umount(store, "odd"), lambda: C.commit(store, "odd", "m"),
                 lambda: C.reset(store, "odd"), lambda: C.restore(store, "odd", ["/etc"]),
                 lambda: C.inspect_container(store, "odd")):
        with pytest.raises(LayerctlError, match=message):
            call()
    with pytest.raises(LayerctlError, match=r"container odd has unknown driver 'zfs' "
                       r"\(this layerctl knows overlay, vfs\); `layerctl rm` removes it"):
        driver_for(c).top(store, c)
    # nothing above was half done: the record and its files are as they were
    rootfs = os.path.join(cstate.state_dir(store, c.id), "rootfs")
    assert open(os.path.join(rootfs, "etc", "hostname")).read() == "box\n"
    # something mounted below it: rm refuses rather than delete through the mount
    subprocess.run(["mount", "-t", "tmpfs", "none", rootfs], check=True)
    try:
        assert C.is_mounted(store, c)
        with pytest.raises(LayerctlError, match="container odd is mounted; umount it first"):
            C.remove(store, "odd")
        with pytest.raises(LayerctlError, match=rf"{rootfs} is mounted; unmount it first"):
            C.remove(store, "odd", force=True)
    finally:
        subprocess.run(["umount", rootfs], check=True)
    C.remove(store, "odd")
    with pytest.raises(LayerctlError, match="no such container"):
        cstate.resolve(store, "odd", broken_ok=True)
    assert not os.path.exists(cstate.state_dir(store, c.id))


def test_an_unknown_driver_is_one_line_from_the_cli(store, image, cli):
    cli("create", "--driver", "vfs", "--name", "odd", "img:1")
    _relabel(store, "odd", "zfs")
    short = cstate.resolve(store, "odd", broken_ok=True).short_id
    for args in (("status", "odd"), ("mount", "odd"), ("diff", "odd")):
        proc = cli(*args, check=False)
        assert proc.returncode != 0, args
        assert proc.stderr.splitlines() == [
            "layerctl: container odd is broken (its driver 'zfs' is unknown to this "
            f"layerctl); remove it with `layerctl rm {short}`"], (args, proc.stderr)
    listed = cli("ps", "-a").stdout
    assert "Broken: its driver 'zfs' is unknown to this layerctl (rm it)" in listed
    cli("system", "df")  # the other figures are not held up by it
    cli("container", "prune", "-f")  # leaves it: only the user's rm removes it
    assert cli("ps", "-a", "-q").stdout.split() == [short]
    cli("rm", "odd")
    assert cli("ps", "-a", "-q").stdout == ""
    assert cli("fsck").stdout.splitlines()[-1].startswith("ok: ")
