"""The store: one bare git repository plus layerctl's own state directories.

ROOT/                 a bare git repository (objects/, refs/, config)
ROOT/refs/images/...  one ref per image tag (see layerctl.images)
ROOT/containers/      container state (layerctl.containers)
ROOT/cache/           extracted layers shared by overlay mounts
"""

from __future__ import annotations

import contextlib
import os
import struct
import zlib
from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING, cast

from layerctl import faults
from layerctl.errors import (
    BadInput,
    Conflict,
    Corrupt,
    InvalidName,
    LayerctlError,
    Locked,
    NotFound,
)
from layerctl.store import debris, loose
from layerctl.store.packs import Pack, PackIndex, pack_bases
from layerctl.store.refread import RefReader, packed_refs, valid_ref_name

if TYPE_CHECKING:
    from dulwich.object_store import DiskObjectStore
    from dulwich.objects import ObjectID, RawObjectID
    from dulwich.refs import DiskRefsContainer, Ref
    from dulwich.repo import Repo

    from layerctl.store.objects import PackWriter


class RefChanged(Locked):
    """A compare-and-swap lost: the ref no longer has the value it was read with."""


class RefBusy(Locked):
    """Another live process holds the ref's lock (for milliseconds, normally)."""

    def __init__(self, message: str, holder: str) -> None:
        super().__init__(message)
        self.holder = holder


PRIVATE_DIRS = ("cache", "containers", "runtime")
_CONFIG = (b"[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = true\n"
           b"\tlogallrefupdates = true\n[layerctl]\n\tversion = 1\n"
           b"[gc]\n\tauto = 0\n")  # git gc must not drop unreferenced container work


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
        elif os.stat(self.root).st_mode & 0o077:
            self._make_private()
        self._repo: Repo | None = None
        self._objects: DiskObjectStore | None = None
        self._refs: DiskRefsContainer | None = None
        self._ref_reader: RefReader | None = None
        self._packs: list[Pack] | None = None  # most recently hit first
        self._loose_dirs: frozenset[str] | None = None  # objects/XX, listed when first read

    def _init(self) -> None:
        if os.path.exists(self.root) and os.listdir(self.root):
            raise LayerctlError(f"{self.root} is not empty and not a layerctl store")
        from layerctl.atomic import write_all, write_file

        # what `git init --bare` (and dulwich's init_bare) make, HEAD last: a store
        # exists once its HEAD does (importing dulwich.repo for this took ~20 ms)
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        for name in ("branches", "hooks", "info", "objects/info", "objects/pack",
                     "refs/heads", "refs/tags", *PRIVATE_DIRS):
            os.makedirs(os.path.join(self.root, name), exist_ok=True)
        for name, data in (("description", b"Unnamed repository"), ("info/exclude", b""),
                           ("config", _CONFIG)):  # nobody reads them before HEAD is there
            fd = os.open(os.path.join(self.root, name),
                         os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            try:
                write_all(fd, data)
                if name == "config":
                    os.fsync(fd)  # HEAD's directory fsync below makes its entry durable
            finally:
                os.close(fd)
        write_file(os.path.join(self.root, "HEAD"), b"ref: refs/heads/master\n")
        self._make_private()

    def _make_private(self) -> None:
        """Only the owner may enter the store: its layer cache and containers hold
        images' setuid binaries, which any local user could otherwise run through a
        world-traversable path (Docker's CVE-2021-41091). runc needs no more: it
        runs as root, and a container process sees its rootfs as / after pivot_root."""
        for path in (self.root, *(os.path.join(self.root, n) for n in PRIVATE_DIRS)):
            with contextlib.suppress(FileNotFoundError, PermissionError):
                os.chmod(path, 0o700)

    # -- objects --------------------------------------------------------

    @property
    def repo(self) -> Repo:
        if self._repo is None:
            from dulwich.repo import Repo

            self._repo = Repo(self.root)
        return self._repo

    @property
    def objects(self) -> DiskObjectStore:
        # The object store and refs alone, not dulwich's Repo: importing
        # dulwich.repo costs ~10 ms of every command's start-up. Reads of single
        # objects and refs need neither (store/packs.py, store/refread.py).
        if self._objects is None:
            from dulwich.object_store import DiskObjectStore

            self._objects = DiskObjectStore(os.path.join(self.root, "objects"))
        return self._objects

    @property
    def refs(self) -> DiskRefsContainer:
        if self._refs is None:
            from dulwich.refs import DiskRefsContainer

            self._refs = DiskRefsContainer(self.root)
        return self._refs

    def has(self, binsha: bytes) -> bool:
        store = self.objects
        return store.contains_packed(cast("RawObjectID", binsha)) or store.contains_loose(
            cast("ObjectID", binsha))  # dulwich takes a binary id here too

    def read_raw(self, sha: bytes) -> tuple[int, bytes]:
        """(type number, content) of an object given its binary or hex id."""
        binsha = sha if len(sha) == 20 else bytes.fromhex(sha.decode())
        try:
            return self._lookup(binsha)
        except LayerctlError:
            raise
        except Exception as e:  # noqa: BLE001 - is_damage decides
            if not is_damage(e):
                raise
        # Raised outside the handler: the parser's frames (holding views of the pack's
        # mmap) must be gone, or closing the store fails with BufferError.
        raise Corrupt(f"store is damaged: object {binsha.hex()} cannot be read; "
                      "run layerctl fsck")

    def _lookup(self, binsha: bytes) -> tuple[int, bytes]:
        """A store holds a pack per import or commit and its layer commits loose, and
        reads come in runs from one layer: the pack that answered last is asked
        first, then the loose objects, then the other packs (dulwich asks every pack
        in a fixed order before the loose objects, ~25 us a pack)."""
        packs = self._packs
        if packs is None:
            packs = self._packs = self._open_packs([])
        if packs:
            found = packs[0].read(binsha, self.read_raw)
            if found is not None:
                return found
        hexsha = binsha.hex()
        if self._loose_dirs is None:  # a loose file is tried only where one can be
            objects = os.path.join(self.root, "objects")
            self._loose_dirs = frozenset(os.listdir(objects) if os.path.isdir(objects) else ())
        found = loose.read(self.root, hexsha) if hexsha[:2] in self._loose_dirs else None
        if found is not None:
            return found
        for i in range(1, len(packs)):
            found = packs[i].read(binsha, self.read_raw)
            if found is not None:
                packs.insert(0, packs.pop(i))
                return found
        for pack in self._open_packs(packs):  # a pack that landed since
            packs.append(pack)
            found = pack.read(binsha, self.read_raw)
            if found is not None:
                return found
        found = loose.read(self.root, hexsha)  # written loose since the listing
        if found is not None:
            self._loose_dirs = None
            return found
        raise Corrupt(f"object {binsha.hex()} is missing from the store")

    def packed_at(self, binsha: bytes) -> tuple[Pack, int] | None:
        """(pack, offset) of a packed object, else None: where store/blobstream.py reads
        a small blob whole and inflates a big one in pieces (store/packs.py's index)."""
        packs = self._packs
        if packs is None:
            packs = self._packs = self._open_packs([])
        for pack in packs:
            offset = pack.index.offset(binsha)
            if offset is not None:
                return pack, offset
        return None

    def _open_packs(self, known: list[Pack]) -> list[Pack]:
        """The packs in the store that are not in `known`, opened (one removed since
        the listing, by a repack or prune, is skipped)."""
        seen = {p.base for p in known}
        out = []
        for base in pack_bases(os.path.join(self.root, "objects", "pack")):
            if base not in seen:
                with contextlib.suppress(FileNotFoundError):
                    out.append(Pack(base))
        return out

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

        No rescans of the pack directory or loose objects per miss: a miss only means
        the object is written again, which git tolerates. The indexes are opened here,
        for this test alone (store/packs.py, no dulwich import: ~12 ms of a commit), so
        that `landed()` closing the store's packs does not close them under a writer.
        """
        indexes = []
        for base in pack_bases(os.path.join(self.root, "objects", "pack")):
            with contextlib.suppress(FileNotFoundError):
                indexes.append(PackIndex(base + ".idx"))

        def packed(binsha: bytes) -> bool:
            return any(index.offset(binsha) is not None for index in indexes)

        return packed

    def pack_writer(self, level: int = 1) -> PackWriter:
        from layerctl.store.objects import PackWriter  # hashing and deflating: writers only

        return PackWriter(
            os.path.join(self.root, "objects", "pack"), self.packed_lookup(), level=level
        )

    def landed(self) -> None:
        """Make objects written by other writers (packs just landed) visible."""
        if self._objects is not None:
            self._objects._update_pack_cache()
        self._close_packs()

    def _close_packs(self) -> None:
        for pack in self._packs or ():
            pack.close()
        self._packs = None
        self._loose_dirs = None

    def add_object(self, type_num: int, data: bytes) -> bytes:
        """Write one small object (a commit, a config) loose; returns its binary id."""
        return loose.write(self.root, type_num, data, lambda: self._temp("object"))

    # -- refs -----------------------------------------------------------

    def _reader(self) -> RefReader:
        if self._ref_reader is None:
            self._ref_reader = RefReader(self.root)
        return self._ref_reader

    def ref(self, name: str) -> str | None:
        value = self._reader().get(name.encode())
        return None if value is None else value.decode()

    def refs_under(self, prefix: str) -> dict[str, str]:
        refs = self._reader().under(prefix.rstrip("/").encode())
        base = prefix.rstrip("/") + "/"
        return {base + k.decode(): v.decode() for k, v in refs.items()}

    def set_ref(self, name: str, old: str | None, new: str, message: str = "") -> None:
        """Compare-and-swap `name` from `old` (None: must not exist) to `new`;
        `message` goes to the ref's reflog (store/journal.py)."""
        self._update_ref(name, old, new, message)

    def delete_ref(self, name: str, old: str, message: str = "delete") -> None:
        self._update_ref(name, old, None, message)

    def _update_ref(self, name: str, old: str | None, new: str | None,
                    message: str = "") -> None:
        """Git's lock protocol (`<ref>.lock` created exclusively and held while the ref
        changes), with the lock flock()ed and marked from the moment it exists until it
        is removed, so that one left by a process killed at any point is known stale
        and cleared here instead of blocking the ref (store/debris.py). The new value is
        written to a temporary file and renamed over the ref, not into the lock as git
        does: rewriting the lock would erase its mark. The one place refs move: every
        move is logged here, under the lock, before it takes effect (reflog and undo
        journal, store/journal.py)."""
        from layerctl.store import journal

        if not valid_ref_name(name.encode()):
            raise InvalidName(f"{name} is not a valid ref name")
        path = os.path.join(self.root, name)
        lock = path + ".lock"
        packed_only = False
        fd = self._lock_ref(name, lock)
        try:
            current = self._current_ref(name, path)
            if current != old:
                raise RefChanged(f"{name} was changed by another layerctl process; try again")
            if new is None:
                journal.record(self.root, name, old, None, message)
                faults.point("ref.delete")
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    packed_only = True
            elif new != current:
                faults.point("ref.move")
                value_fd, value = self._temp("refvalue")
                try:
                    try:
                        os.write(value_fd, new.encode() + b"\n")
                        os.fsync(value_fd)
                    finally:
                        os.close(value_fd)
                    journal.record(self.root, name, current, new, message)
                    faults.point("ref.logged")
                    os.rename(value, path)
                except BaseException:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(value)
                    raise
        finally:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lock)
        if new is None:
            if packed_only:
                assert old is not None  # delete_ref always names the value it deletes
                self._delete_packed(name, old)
            self._prune_ref_dirs(os.path.dirname(path))

    def _prune_ref_dirs(self, directory: str) -> None:
        """Remove the directories a deleted ref leaves empty, as git does."""
        top = os.path.join(self.root, "refs")
        while directory.startswith(top + "/"):
            try:
                os.rmdir(directory)
            except OSError:
                return
            directory = os.path.dirname(directory)

    def _lock_ref(self, name: str, lock: str) -> int:
        cleared = False
        for _ in range(4):
            os.makedirs(os.path.dirname(lock), exist_ok=True)
            # Held and marked before it appears under the lock's name (a link, which
            # fails if the name exists): no instant shows an unmarked lock of ours.
            fd, marked = self._temp("reflock")
            try:
                debris.hold_lock(fd)
                faults.point("ref.lock")
                os.link(marked, lock)
            except FileNotFoundError:
                os.close(fd)
                continue  # a deletion pruned the emptied directory just now
            except FileExistsError:
                os.close(fd)
                if not cleared and debris.clear_if_stale(lock):
                    cleared = True
                    continue
                holder = debris.lock_holder(lock)
                raise RefBusy(f"{name} is locked by {holder}; try again", holder) from None
            except NotADirectoryError:
                os.close(fd)
                raise Conflict(f"{name} clashes with an existing ref") from None
            except BaseException:
                os.close(fd)
                raise
            finally:
                os.unlink(marked)
            return fd
        raise RefBusy(f"{name} is being changed by another process; try again", "another process")

    def _temp(self, kind: str) -> tuple[int, str]:
        """A new file of this process in objects/ (same filesystem as refs/), named so
        that debris.clean_temps removes it if the process dies before it is gone."""
        path = os.path.join(self.root, "objects", debris.temp_prefix(kind) + os.urandom(6).hex())
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644), path

    def _current_ref(self, name: str, path: str) -> str | None:
        value: bytes | None
        try:
            with open(path, "rb") as f:
                value = f.readline().strip()
        except FileNotFoundError:
            value = packed_refs(self.root).get(name.encode())  # read afresh, under the lock
        except IsADirectoryError:
            raise Conflict(f"{name} clashes with an existing ref") from None
        return value.decode() if value else None

    def _delete_packed(self, name: str, old: str) -> None:
        # Only after `git pack-refs` by hand: dulwich rewrites packed-refs under its lock.
        from dulwich.file import FileLocked

        try:
            ok = self.refs.remove_if_equals(cast("Ref", name.encode()),
                                            cast("ObjectID", old.encode()))
        except FileLocked:
            raise Locked("packed-refs is locked by another process; try again") from None
        if not ok:
            raise RefChanged(f"{name} was changed by another layerctl process; try again")

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
        self._close_packs()
        self._refs = None
        _cached_tree.cache_clear()




@lru_cache(maxsize=4096)
def _cached_tree(store: Store, binsha: bytes) -> list[tuple[bytes, bytes, bytes]]:
    from layerctl.store.objects import TREE, parse_tree

    type_num, data = store.read_raw(binsha)
    if type_num != TREE:
        raise Corrupt(f"object {binsha.hex()} is not a tree")
    return parse_tree(data)
