"""The container driver registry (containers/drivers/): every driver name a container
record can be written with has a driver, and a record naming a driver this layerctl
does not know is one clear error, not a traceback or a guess."""

from __future__ import annotations

import json
import os

import pytest

import layerctl.containers as C
from layerctl.containers import state as cstate
from layerctl.containers.drivers import DRIVERS, choose, driver_for, external
from layerctl.errors import LayerctlError
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
    c, _notice = C.create(store, "img:1", name="c", driver=name)
    stored = cstate.resolve(store, "c")  # as read back from its state.json
    assert stored.driver == name
    driver = driver_for(stored)
    assert driver.name == name and driver.owned
    assert C.status(store, "c") == []
    assert C.root_dir(store, stored) == driver.root(store, stored)


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
    with pytest.raises(LayerctlError, match="tracks podman container web: mount it with podman"):
        C.mount(store, "tracked")
    with pytest.raises(LayerctlError, match="reset it with podman"):
        C.reset(store, "tracked")
    C.remove(store, "tracked")
    assert (upper / "etc" / "motd").read_text() == "hello\n"  # the engine's files stay


def _relabel(store, name: str, driver: str) -> None:
    """Write `driver` into the container's state.json, as a hand edit or a newer
    layerctl would have."""
    path = os.path.join(cstate.state_dir(store, cstate.resolve(store, name).id), "state.json")
    with open(path) as f:
        data = json.load(f)
    data["driver"] = driver
    with open(path, "w") as f:
        json.dump(data, f)


def test_an_unknown_driver_is_a_clear_error(store, image):
    C.create(store, "img:1", name="odd", driver="vfs")
    _relabel(store, "odd", "zfs")
    c = cstate.resolve(store, "odd")
    message = r"container odd has unknown driver 'zfs' \(this layerctl knows overlay, vfs\)"
    for call in (lambda: C.status(store, "odd"), lambda: C.mount(store, "odd"),
                 lambda: C.is_mounted(store, c), lambda: C.umount(store, "odd"),
                 lambda: C.commit(store, "odd", "m")):
        with pytest.raises(LayerctlError, match=message):
            call()
    # nothing above was half done: the record is as it was
    assert "mounted" not in cstate.resolve(store, "odd").extra


def test_an_unknown_driver_is_one_line_from_the_cli(store, image, cli):
    cli("create", "--driver", "vfs", "--name", "odd", "img:1")
    _relabel(store, "odd", "zfs")
    for args in (("status", "odd"), ("mount", "odd"), ("diff", "odd")):
        proc = cli(*args, check=False)
        assert proc.returncode != 0, args
        assert "Traceback" not in proc.stderr
        assert proc.stderr.strip().splitlines() == [
            "layerctl: container odd has unknown driver 'zfs' (this layerctl knows overlay, vfs)"
        ], (args, proc.stderr)
