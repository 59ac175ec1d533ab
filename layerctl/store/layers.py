"""Layer commits: tree {rootfs, meta, config.json}, the user's author and message,
layerctl as committer, derived facts as message trailers."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from layerctl.errors import BadInput, Corrupt, NotFound
from layerctl.record import Frozen
from layerctl.store.fstree import DirRef
from layerctl.store.objects import BLOB, COMMIT, MODE_FILE, MODE_TREE, TREE, serialize_tree

if TYPE_CHECKING:
    from datetime import datetime

    from layerctl.store.repo import Store
    from layerctl.store.types import ObjectReader, TreeReader

COMMITTER = "layerctl <layerctl@localhost>"
# Source-DiffID: the DiffID of the layer tar an image archive or registry gave, when it
# differs from DiffID (the sha256 of layerctl's own changeset tar of the layer).
# Rebased-From: the layer a rebase/cherry-pick/squash rewrote into this one; Base-Name,
# Base-Layer: the base a rebase put under it (OCI's org.opencontainers.image.base.*).
TRAILER_KEYS = ("DiffID", "Size", "Created-By", "Source-DiffID", "Rebased-From", "Base-Name",
                "Base-Layer")
# A loaded or pulled layer's source/ tree (optional) keeps, to give back what came in:
# tar-split (oci.tarsplit: the layer tar's bytes besides file contents), config.json
# and manifest.json (the image's own config and manifest bytes, on the top layer).
SOURCE = b"source"
SOURCE_NAMES = (b"config.json", b"manifest.json", b"tar-split")
class Layer(Frozen):
    __slots__ = ("id", "parent", "root", "config", "author", "author_time", "author_tz",
                 "message", "trailers", "source")
    # config and trailers are left out of == and hash, as they were of the dataclass's
    _compared = ("id", "parent", "root", "author", "author_time", "author_tz", "message",
                 "source")

    def __init__(self, id: str, parent: str | None, root: DirRef, config: dict[str, Any],
                 author: str = "", author_time: int = 0, author_tz: int = 0,
                 message: str = "", trailers: dict[str, str] | None = None,
                 source: bytes | None = None):
        self.id = id
        self.parent = parent
        self.root = root
        self.config = config
        self.author = author
        self.author_time = author_time
        self.author_tz = author_tz
        self.message = message
        self.trailers = {} if trailers is None else trailers
        self.source = source  # the source/ tree: what a loaded or pulled layer kept

    @property
    def diff_id(self) -> str:
        return self.trailers.get("DiffID", "")

    @property
    def source_diff_id(self) -> str:
        """The DiffID the layer had where it was loaded from (empty: the same as diff_id)."""
        return self.trailers.get("Source-DiffID", "")

    @property
    def sent_diff_id(self) -> str:
        """The DiffID `save` and `push` send: the original tar's for a loaded or pulled
        layer that keeps it (source/tar-split, if intact), else its changeset's."""
        return self.source_diff_id if self.source is not None and self.source_diff_id else (
            self.diff_id)

    @property
    def size(self) -> int:
        value = self.trailers.get("Size", "0")
        return int(value) if value.isascii() and value.isdigit() else 0  # fsck names a bad one

    @property
    def created_by(self) -> str:
        return self.trailers.get("Created-By", "")

    @property
    def created(self) -> datetime:
        from datetime import datetime, timedelta, timezone  # `inspect`, `history` only

        tz = timezone(timedelta(seconds=self.author_tz))
        return datetime.fromtimestamp(self.author_time, tz)

    @property
    def created_iso(self) -> str:
        # = created.astimezone(UTC).strftime(...), without importing datetime (images)
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.author_time))

    @property
    def author_name(self) -> str:
        """The author as Docker shows it: a bare name stays bare."""
        return self.author[:-3] if self.author.endswith(" <>") else self.author

    @property
    def summary(self) -> str:
        return self.message.split("\n", 1)[0]


def split_trailers(message: str) -> tuple[str, dict[str, str]]:
    body = message.rstrip("\n")
    head, sep, last = body.rpartition("\n\n")
    candidate = last if sep else body
    trailers = {}
    for line in candidate.split("\n"):
        key, colon, value = line.partition(": ")
        if not colon or key not in TRAILER_KEYS:
            return body, {}
        trailers[key] = value
    return (head if sep else ""), trailers


def format_message(message: str, trailers: dict[str, str]) -> str:
    lines = [f"{k}: {v}" for k, v in trailers.items() if v]
    text = message.strip("\n")
    return (text + "\n\n" if text else "") + "\n".join(lines) + "\n"


def _parse_commit(raw: bytes) -> tuple[bytes, list[bytes], bytes, int, int, bytes]:
    """(tree, parents, author, author time, author UTC offset in seconds, message) of
    git commit bytes; ValueError when malformed. Headers end at the first empty line;
    a line starting with a space continues the previous header (gpgsig)."""
    head, sep, message = raw.partition(b"\n\n")
    if not sep and raw.endswith(b"\n"):
        head, message = raw[:-1], b""
    tree, author, parents = b"", b"", []
    for line in head.split(b"\n"):
        if line.startswith(b" "):
            continue
        key, _, value = line.partition(b" ")
        if key == b"tree":
            tree = value
        elif key == b"parent":
            parents.append(value)
        elif key == b"author":
            author = value
    person, gt, when = author.rpartition(b"> ")
    seconds, _, zone = when.rpartition(b" ")
    if len(tree) != 40 or not gt or zone[:1] not in (b"+", b"-"):
        raise ValueError("malformed commit")
    hhmm = int(zone[1:])  # git writes +HHMM; a "-0000" zone is UTC too
    offset = (hhmm // 100) * 3600 + (hhmm % 100) * 60
    return (tree, parents, person + b">", int(seconds), -offset if zone[:1] == b"-" else offset,
            message)


def read_layer(store: ObjectReader, hexid: str) -> Layer:
    """Decode a layer commit (parsed here: dulwich's object module costs ~3 ms of the
    start-up of every command that reads a layer)."""
    type_num, raw = store.read_raw(hexid.encode())
    if type_num != COMMIT:
        raise NotFound(f"{hexid[:12]} is not a layer")
    try:
        tree_hex, parents, author, author_time, author_tz, text = _parse_commit(raw)
        tree_id = bytes.fromhex(tree_hex.decode())
    except ValueError:
        raise Corrupt(f"layer {hexid[:12]}: malformed commit") from None
    tree = {name: sha for name, _mode, sha in store.read_tree(tree_id)}
    if b"rootfs" not in tree or b"meta" not in tree:
        raise NotFound(f"{hexid[:12]} is a commit but not a layer")
    config: Any = {}
    if b"config.json" in tree:
        try:
            config = json.loads(store.read_blob(tree[b"config.json"]))
        except ValueError:
            config = None
        if not isinstance(config, dict):
            raise Corrupt(f"layer {hexid[:12]}: config.json is not a JSON object")
    message, trailers = split_trailers(text.decode("utf-8", "replace"))
    return Layer(
        id=hexid,
        parent=parents[0].decode() if parents else None,
        root=DirRef(tree[b"rootfs"], tree[b"meta"]),
        config=config,
        author=author.decode("utf-8", "replace"),
        author_time=author_time,
        author_tz=author_tz,
        message=message,
        trailers=trailers,
        source=tree.get(SOURCE),
    )


def read_source(store: TreeReader, layer: Layer, name: bytes) -> bytes | None:
    """The blob `name` of a layer's source/ tree (SOURCE_NAMES), if it has one."""
    if layer.source is None:
        return None
    for entry, _mode, sha in store.read_tree(layer.source):
        if entry == name:
            return store.read_blob(sha)
    return None


def write_layer(
    store: Store,
    root: DirRef,
    config: dict[str, Any],
    parent: str | None,
    author: str,
    message: str,
    trailers: dict[str, str],
    when: int | None = None,
    source: dict[bytes, bytes] | bytes | None = None,
) -> str:
    """Write config, top tree and commit as loose objects; returns the layer id.

    The trees under `root` must already be in the store. `source` is what a loaded
    or pulled layer keeps of its origin (SOURCE_NAMES -> content), or the id of
    another layer's source/ tree to share.
    """
    config_blob = store.add_object(
        BLOB, (json.dumps(config, indent=2, sort_keys=True) + "\n").encode()
    )
    entries = [
        (b"config.json", MODE_FILE, config_blob),
        (b"meta", MODE_TREE, root.meta),
        (b"rootfs", MODE_TREE, root.rootfs),
    ]
    if isinstance(source, dict):
        blobs = [(name, MODE_FILE, store.add_object(BLOB, data))
                 for name, data in sorted(source.items()) if data is not None]
        source = store.add_object(TREE, serialize_tree(blobs)) if blobs else None
    if source is not None:
        entries.append((SOURCE, MODE_TREE, source))
    top = serialize_tree(entries)
    tree = store.add_object(TREE, top)
    now = int(time.time()) if when is None else when
    tz = time.localtime(now).tm_gmtoff
    stamp = f"{now} {_tz(tz)}"
    lines = [f"tree {tree.hex()}"]
    if parent:
        lines.append(f"parent {parent}")
    lines.append(f"author {author} {stamp}")
    lines.append(f"committer {COMMITTER} {stamp}")
    try:
        raw = ("\n".join(lines) + "\n\n" + format_message(message, trailers)).encode("utf-8")
    except UnicodeEncodeError:  # bytes from argv that are not UTF-8 (surrogate escapes)
        raise BadInput("the layer's message, author or -c instructions are not valid UTF-8 "
                       "text") from None
    return store.add_object(COMMIT, raw).hex()


def _tz(offset: int) -> str:
    sign = "-" if offset < 0 else "+"
    offset = abs(offset)
    return f"{sign}{offset // 3600:02d}{offset % 3600 // 60:02d}"
