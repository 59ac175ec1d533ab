"""The store: one bare git repository plus layerctl's own state directories.

ROOT/                 a bare git repository (objects/, refs/, config)
ROOT/refs/images/...  one ref per image tag (see layerctl.images)
ROOT/containers/      container state (layerctl.containers)
ROOT/cache/           extracted layers shared by overlay mounts
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING

from layerctl.errors import BadInput, Corrupt, LayerctlError, Locked, NotFound
from layerctl.store.objects import PackWriter

if TYPE_CHECKING:
    from dulwich.repo import Repo


def _is_layerctl_config(path: str) -> bool:
    """Whether a git config has the [layerctl] section every store is made with (so a
    command never writes layerctl's state into somebody's git repository)."""
    try:
        with open(path, "rb") as f:
            return any(line.strip().lower().startswith(b"[layerctl]") for line in f)
    except OSError:
        return False


def is_damage(e: Exception) -> bool:
    """Whether `e` is what dulwich raises on a truncated or bit-flipped pack, index or
    loose object (its parsers trip on whatever comes first)."""
    from dulwich.errors import ApplyDeltaError, ChecksumMismatch, FileFormatException

    return not isinstance(e, LayerctlError) and isinstance(e, (
        OSError, ValueError, AssertionError, IndexError, zlib.error, struct.error,
        ChecksumMismatch, ApplyDeltaError, FileFormatException))


def default_root() -> str:
    """LAYERCTL_ROOT, else $XDG_DATA_HOME/layerctl, else ~/.local/share/layerctl."""
    root = os.environ.get("LAYERCTL_ROOT")
    if root:
        return root
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "share"
    )
    return os.path.join(data, "layerctl")


class Store:
    """A layerctl store at `root`; created on first use when `create` is true."""

    def __init__(self, root: str | None = None, create: bool = True) -> None:
        self.root = os.path.abspath(root or default_root())
        if os.path.exists(self.root) and not os.path.isdir(self.root):
            raise BadInput(f"{self.root} is not a directory: the store root must be one")
        if not os.path.isfile(os.path.join(self.root, "HEAD")):
            if not create:
                raise NotFound(f"no layerctl store at {self.root}")
            self._init()
        elif not _is_layerctl_config(os.path.join(self.root, "config")):
            raise BadInput(f"{self.root} is a git repository but not a layerctl store")
        self._repo: Repo | None = None
        self._objects = None
        self._refs = None

    def _init(self) -> None:
        if os.path.exists(self.root) and os.listdir(self.root):
            raise LayerctlError(f"{self.root} is not empty and not a layerctl store")
        from dulwich.repo import Repo

        os.makedirs(self.root, exist_ok=True)
        repo = Repo.init_bare(self.root)
        config = repo.get_config()
        config.set((b"layerctl",), b"version", b"1")
        config.set((b"gc",), b"auto", b"0")  # git gc must not drop unreferenced container work
        config.write_to_path()
        repo.close()

    # -- objects --------------------------------------------------------

    @property
    def repo(self) -> Repo:
        if self._repo is None:
            from dulwich.repo import Repo

            self._repo = Repo(self.root)
        return self._repo

    @property
    def objects(self):  # noqa: ANN201 - dulwich's DiskObjectStore
        # The object store and refs alone, not dulwich's Repo: importing
        # dulwich.repo costs ~10 ms of every command's start-up.
        if self._objects is None:
            from dulwich.object_store import DiskObjectStore

            self._objects = DiskObjectStore(os.path.join(self.root, "objects"))
        return self._objects

    @property
    def refs(self):  # noqa: ANN201 - dulwich's DiskRefsContainer
        if self._refs is None:
            from dulwich.refs import DiskRefsContainer

            self._refs = DiskRefsContainer(self.root)
        return self._refs

    def has(self, binsha: bytes) -> bool:
        store = self.objects
        return store.contains_packed(binsha) or store.contains_loose(binsha)

    def read_raw(self, sha: bytes) -> tuple[int, bytes]:
        """(type number, content) of an object given its binary or hex id."""
        hexsha = sha.hex().encode() if len(sha) == 20 else sha
        try:
            return self.objects.get_raw(hexsha)
        except KeyError:
            raise Corrupt(f"object {hexsha.decode()} is missing from the store") from None
        except Exception as e:  # noqa: BLE001 - is_damage decides
            if not is_damage(e):
                raise
        # Raised outside the handler: the parser's frames (holding views of the pack's
        # mmap) must be gone, or closing the store fails with BufferError.
        raise Corrupt(f"store is damaged: object {hexsha.decode()} cannot be read; "
                      "run layerctl fsck")

    def ids_with_prefix(self, prefix: str) -> set[str]:
        """The hex ids of the objects whose id starts with `prefix` (hex)."""
        try:
            return {sha.decode() if isinstance(sha, bytes) else sha
                    for sha in self.objects.iter_prefix(prefix.encode())}
        except Exception as e:  # noqa: BLE001 - is_damage decides
            if not is_damage(e):
                raise
        raise Corrupt("store is damaged: a pack index cannot be read; run layerctl fsck")

    def read_blob(self, binsha: bytes) -> bytes:
        return self.read_raw(binsha)[1]

    def read_tree(self, binsha: bytes) -> list[tuple[bytes, bytes, bytes]]:
        return _cached_tree(self, binsha)

    def packed_lookup(self) -> Callable[[bytes], bool]:
        """A fast "is this object already packed?" test over the packs present now.

        Skips dulwich's per-miss rescans of the pack directory and loose objects:
        a miss only means the object is written again, which git tolerates.
        """
        indexes = [pack.index for pack in self.objects.packs]

        def packed(binsha: bytes) -> bool:
            for index in indexes:
                try:
                    index.object_offset(binsha)
                    return True
                except KeyError:
                    continue
            return False

        return packed

    def pack_writer(self, level: int = 1) -> PackWriter:
        return PackWriter(
            os.path.join(self.root, "objects", "pack"), self.packed_lookup(), level=level
        )

    def landed(self) -> None:
        """Make objects written by other writers (packs just landed) visible."""
        self.objects._update_pack_cache()

    def add_object(self, type_num: int, data: bytes) -> bytes:
        """Write one small object (a commit) as a loose object; returns its binary id."""
        from dulwich.objects import ShaFile

        obj = ShaFile.from_raw_string(type_num, data)
        self.objects.add_object(obj)
        return bytes.fromhex(obj.id.decode())

    # -- refs -----------------------------------------------------------

    def ref(self, name: str) -> str | None:
        try:
            value = self.refs[name.encode()]
        except KeyError:
            return None
        return value.decode()

    def refs_under(self, prefix: str) -> dict[str, str]:
        refs = self.refs.as_dict(prefix.rstrip("/").encode())
        base = prefix.rstrip("/") + "/"
        return {base + k.decode(): v.decode() for k, v in refs.items()}

    def set_ref(self, name: str, old: str | None, new: str, message: str = "") -> None:
        """Compare-and-swap `name` from `old` (None: must not exist) to `new`."""
        from dulwich.file import FileLocked

        refs = self.refs
        try:
            if old is None:
                ok = refs.add_if_new(name.encode(), new.encode(), message=message.encode() or None)
            else:
                ok = refs.set_if_equals(
                    name.encode(), old.encode(), new.encode(), message=message.encode() or None
                )
        except FileLocked:
            raise Locked(f"{name} is locked by another layerctl process; try again") from None
        if not ok:
            raise Locked(f"{name} was changed by another layerctl process; try again")

    def delete_ref(self, name: str, old: str) -> None:
        from dulwich.file import FileLocked

        try:
            ok = self.refs.remove_if_equals(name.encode(), old.encode())
        except FileLocked:
            raise Locked(f"{name} is locked by another layerctl process; try again") from None
        if not ok:
            raise Locked(f"{name} was changed by another layerctl process; try again")

    # -- state directories ------------------------------------------------

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def close(self) -> None:
        if self._repo is not None:
            self._repo.close()
            self._repo = None
        if self._objects is not None:
            self._objects.close()
            self._objects = None
        self._refs = None
        _cached_tree.cache_clear()


@lru_cache(maxsize=4096)
def _cached_tree(store: Store, binsha: bytes) -> list[tuple[bytes, bytes, bytes]]:
    from layerctl.store.objects import TREE, parse_tree

    type_num, data = store.read_raw(binsha)
    if type_num != TREE:
        raise Corrupt(f"object {binsha.hex()} is not a tree")
    return parse_tree(data)
