"""dpkg file ownership (insight/packages.py): which info/*.list files name a path is read
once per info directory and kept under that directory's tree id alone; the status file
of each layer then decides which installed package reads which list, and the first of
them in the status file's order owns a path. Layers that change only the status file
(apt-get upgrade, remove without purge) share one kept map and still get their own
owners."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from layerctl.insight import packages
from layerctl.store.layers import read_layer
from layerctl.store.repo import Store
from tests.layerhelpers import commit_edit, import_dir, put_file

STATUS = b"var/lib/dpkg/status"
INFO = b"var/lib/dpkg/info"


def _stanza(name: str, arch: str = "all", state: str = "install ok installed") -> bytes:
    return (f"Package: {name}\nStatus: {state}\nVersion: 1.{len(name)}\n"
            f"Architecture: {arch}\n\n").encode()


LISTS = {
    # zed and alpha both list usr/bin/shared: the first of them in the status file owns it
    "zed.list": b"/.\n/usr\n/usr/bin\n/usr/bin/shared\n/usr/bin/z\n",
    "alpha.list": b"/.\n/usr\n/usr/bin\n/usr/bin/a\n/usr/bin/shared\n/usr/share/doc/alpha/"
                  + b"x" * 120 + b"\n",  # the longest list: the limit test makes it too long
    # a list whose package is not installed in the base (removed, list left behind)
    "gone.list": b"/.\n/usr/bin/g\n",
    # multi-arch: each architecture's own list; plain.list for a package without one
    "libx:amd64.list": b"/usr/lib/x86_64-linux-gnu/libx.so.1\n/usr/share/doc/libx/copyright\n",
    "libx:i386.list": b"/usr/lib/i386-linux-gnu/libx.so.1\n/usr/share/doc/libx/copyright\n",
    "plain.list": b"/bin/plain\n/usr/share/plain/\n",
}


class ReadCountingStore(Store):
    """A real store that records the blobs read through it (read_blob, and packed_at,
    where blobstream's bounded reader starts)."""

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self.blobs: list[bytes] = []

    def read_blob(self, binsha: bytes) -> bytes:
        self.blobs.append(binsha)
        return super().read_blob(binsha)

    def packed_at(self, binsha: bytes) -> tuple[object, int] | None:
        self.blobs.append(binsha)
        return super().packed_at(binsha)


@pytest.fixture
def layers(store: Store, tmp_path: Path) -> tuple[str, str, str]:
    """p:base (zed before alpha; gone not installed) -> p:up (only the status file
    rewritten: alpha first, zed removed, gone installed) -> p:purge (a list deleted: the
    info directory changes)."""
    src = tmp_path / "src"
    (src / "var/lib/dpkg/info").mkdir(parents=True)
    (src / "usr/bin").mkdir(parents=True)
    for name in ("shared", "z", "a", "g"):
        (src / "usr/bin" / name).write_bytes(name.encode() * 10)
    (src / "var/lib/dpkg/status").write_bytes(
        _stanza("zed") + _stanza("alpha") + _stanza("gone", state="deinstall ok config-files")
        + _stanza("libx", "amd64") + _stanza("libx", "i386") + _stanza("plain", "amd64"))
    for name, data in LISTS.items():
        (src / "var/lib/dpkg/info" / name).write_bytes(data)
    base = import_dir(store, src, "p:base")
    up = commit_edit(store, base, lambda e, w: put_file(
        e, w, STATUS, _stanza("alpha") + _stanza("gone") + _stanza("libx", "amd64")),
        "p:up", "upgrade")
    purge = commit_edit(store, up, lambda e, w: e.delete(INFO + b"/gone.list"), "p:purge",
                        "purge gone")
    return base, up, purge


ASKED = (b"usr/bin/shared", b"usr/bin/z", b"usr/bin/a", b"usr/bin/g",
         b"usr/lib/x86_64-linux-gnu/libx.so.1", b"usr/lib/i386-linux-gnu/libx.so.1",
         b"usr/share/doc/libx/copyright", b"usr/bin/plain", b"usr/share/plain")


def _owners(store: Store, layer_id: str, pkgs: packages.Packages) -> dict[bytes, str | None]:
    tree = pkgs.tree(read_layer(store, layer_id).root, layer_id[:12])
    out = {}
    for path in ASKED:
        pkg = pkgs.owner(tree, path)
        out[path] = pkg.key if pkg else None
    return out


EXPECTED = {
    "base": {b"usr/bin/shared": "zed", b"usr/bin/z": "zed", b"usr/bin/a": "alpha",
             b"usr/bin/g": None,  # its list is there, its package is not installed
             b"usr/lib/x86_64-linux-gnu/libx.so.1": "libx:amd64",
             b"usr/lib/i386-linux-gnu/libx.so.1": "libx:i386",
             b"usr/share/doc/libx/copyright": "libx:amd64",  # first in the status file
             b"usr/bin/plain": "plain",  # /bin/plain in the list: merged /usr
             b"usr/share/plain": "plain"},
    "up": {b"usr/bin/shared": "alpha", b"usr/bin/z": None, b"usr/bin/a": "alpha",
           b"usr/bin/g": "gone", b"usr/lib/x86_64-linux-gnu/libx.so.1": "libx",
           b"usr/lib/i386-linux-gnu/libx.so.1": None,
           b"usr/share/doc/libx/copyright": "libx", b"usr/bin/plain": None,
           b"usr/share/plain": None},
}
EXPECTED["purge"] = {**EXPECTED["up"], b"usr/bin/g": None}


def _list_blobs(store: Store, pkgs: packages.Packages, layer_id: str) -> set[bytes]:
    tree = pkgs.tree(read_layer(store, layer_id).root, layer_id[:12])
    return {sha for name, sha in tree.listing(INFO)[1].items() if name.endswith(b".list")}


def _kept(root: Path) -> list[str]:
    d = root / "cache" / packages.DPKG_LISTS
    return sorted(os.listdir(d)) if d.is_dir() else []


def test_lists_are_read_once_per_info_directory_and_each_status_picks_owners(
        layers, store_root):
    base, up, purge = layers
    store = ReadCountingStore(str(store_root))
    try:
        pkgs = packages.Packages(store)
        lists = _list_blobs(store, pkgs, base)
        assert _owners(store, base, pkgs) == EXPECTED["base"]
        read_for_base = len(store.blobs)
        assert _owners(store, up, pkgs) == EXPECTED["up"]
        # the second layer has the same info directory: no list is read again, only its
        # own status file (and the record of the directory holding it)
        assert not lists & set(store.blobs[read_for_base:])
        assert _owners(store, purge, pkgs) == EXPECTED["purge"]
        assert not pkgs.warnings
    finally:
        store.close()
    # one kept map per info directory (base and up share theirs), not one per status
    # file, named by the directory's tree id
    store = Store(str(store_root))
    try:
        pkgs = packages.Packages(store)
        infos = {pkgs.tree(read_layer(store, x).root, "t").listing(INFO)[0].hex()
                 for x in (base, up, purge)}
    finally:
        store.close()
    assert len(infos) == 2
    assert _kept(store_root) == sorted(infos)


def test_kept_lists_give_the_same_owners_without_reading_a_list(layers, store_root):
    base, up, purge = layers
    first = Store(str(store_root))
    try:
        expected = {k: _owners(first, x, packages.Packages(first))
                    for k, x in (("base", base), ("up", up), ("purge", purge))}
    finally:
        first.close()
    assert expected == EXPECTED
    store = ReadCountingStore(str(store_root))
    try:
        pkgs = packages.Packages(store)
        again = {k: _owners(store, x, pkgs)
                 for k, x in (("base", base), ("up", up), ("purge", purge))}
        lists = _list_blobs(store, pkgs, base) | _list_blobs(store, pkgs, purge)
        assert again == EXPECTED
        assert not lists & set(store.blobs)  # the status files only
    finally:
        store.close()


def test_a_kept_map_is_not_read_under_another_list_limit_and_warns_every_run(
        layers, store_root, monkeypatch):
    base, up, _purge = layers
    store = Store(str(store_root))
    try:
        assert _owners(store, base, packages.Packages(store))[b"usr/bin/a"] == "alpha"
        assert len(_kept(store_root)) == 1
        monkeypatch.setattr(packages, "MAX_LIST", len(LISTS["alpha.list"]) - 1)
        for _ in range(2):  # the second run reads the map kept by the first
            pkgs = packages.Packages(store)
            owners = _owners(store, base, pkgs)
            assert owners[b"usr/bin/a"] is None  # alpha.list is over the limit now
            assert owners[b"usr/bin/shared"] == "zed"
            owners_up = _owners(store, up, pkgs)
            assert owners_up[b"usr/bin/shared"] is None  # only alpha reads a list naming it
            assert pkgs.warnings == [  # once per list, naming the first layer that read it
                f"var/lib/dpkg/info/alpha.list in {base[:12]} is over "
                f"{packages.MAX_LIST} bytes; its files are not attributed"]
    finally:
        store.close()


@pytest.mark.parametrize("damage", ["not marshal", "old shape", "list values", "other limit"])
def test_a_malformed_kept_map_is_read_again_from_the_lists(layers, store_root, damage):
    import marshal

    base, _up, _purge = layers
    store = Store(str(store_root))
    try:
        assert _owners(store, base, packages.Packages(store)) == EXPECTED["base"]
        (kept,) = (store_root / "cache" / packages.DPKG_LISTS).iterdir()
        version, (limit, too_big, paths) = marshal.loads(kept.read_bytes())
        kept.write_bytes({
            "not marshal": b"\xff\x00 not marshal",
            "old shape": marshal.dumps((version, (limit, {p: "zed" for p in paths}))),
            "list values": marshal.dumps(
                (version, (limit, too_big, {p: [v] for p, v in paths.items()}))),
            "other limit": marshal.dumps((version, (limit + 1, too_big, {}))),
        }[damage])
        assert _owners(store, base, packages.Packages(store)) == EXPECTED["base"]
        assert marshal.loads(kept.read_bytes()) == (version, (limit, too_big, paths))
    finally:
        store.close()
