"""`layerctl demo`: a sample image and container, built offline with no setup.

The image reproduces the classic union-filesystem picture: layer 1 holds files
1-3, layer 2 files 4-6, layer 3 adds file 7 and deletes file 5 (file 7 takes
its place), so the merged view at the top shows six files. Timestamps are
fixed, so the layer ids are the same on every run (tests rely on it).
A container on the image carries one pending change.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from layerctl.changeset.write import write_changeset
from layerctl.images import default_config, image_layer, parse_name, set_tag
from layerctl.store.edit import TreeEditor
from layerctl.store.layers import read_layer, write_layer
from layerctl.store.meta import DIR, FILE, Meta
from layerctl.store.objects import BLOB

if TYPE_CHECKING:
    from layerctl.store.repo import Store

IMAGE = "layerctl-demo:latest"
CONTAINER = "layerctl-demo"
EPOCH = 1_700_000_000  # 2023-11-14: fixed, so ids and ages never depend on the clock

# (author, message, files added as name -> text, names deleted)
LAYERS: list[tuple[str, str, dict[str, str], list[str]]] = [
    (
        "Ada Lovelace <ada@example.com>",
        "Layer 1: files 1-3",
        {f"file{i}": f"This is file {i}, from layer 1.\n" for i in (1, 2, 3)},
        [],
    ),
    (
        "张伟 <zhang.wei@example.com>",
        "第二层: files 4-6",
        {f"file{i}": f"This is file {i}, from layer 2.\n" for i in (4, 5, 6)},
        [],
    ),
    (
        "Grace Hopper <grace@example.com>",
        "Layer 3: file 7 replaces file 5",
        {"file7": "This is file 7, from layer 3. It hides file 5 of layer 2.\n"},
        ["file5"],
    ),
]
PENDING_FILE = "notes.txt"
PENDING_TEXT = "A pending change: this file is in the container, not yet in a layer.\n"


@dataclass
class Demo:
    image: str
    layers: list[str]  # base first
    container: str | None
    notice: str = ""


def build_image(store: Store, name: str = IMAGE) -> list[str]:
    """Write the three layers (idempotent: same ids every time) and tag the top."""
    parent_id: str | None = None
    parent_root = None
    ids = []
    for i, (author, message, files, deleted) in enumerate(LAYERS):
        when = EPOCH + 3600 * i
        editor = TreeEditor(store, parent_root, Meta(DIR, 0o755, mtime_ns=when * 10**9))
        with store.pack_writer() as writer:
            for fname, text in files.items():
                data = text.encode()
                blob = writer.add(BLOB, data)
                meta = Meta(FILE, 0o644, 0, 0, when * 10**9, len(data))
                editor.set_file(fname.encode(), meta, blob)
            for fname in deleted:
                editor.delete(fname.encode())
            root = editor.write(writer)
            writer.finish()
        store.landed()
        size = sum(len(t.encode()) for t in files.values())
        trailers = {
            "DiffID": write_changeset(store, parent_root, root)[0],
            "Size": str(size),
            "Created-By": f"layerctl demo (layer {i + 1})",
        }
        parent_id = _write_fixed(store, root, parent_id, author, message, trailers, when)
        parent_root = root
        ids.append(parent_id)
    image = parse_name(name)
    if image_layer(store, image) != parent_id:
        set_tag(store, image, parent_id)
    return ids


def _write_fixed(store: Store, root: object, parent: str | None, author: str, message: str,
                 trailers: dict[str, str], when: int) -> str:
    # A fixed UTC offset as well as a fixed time: the ids must not depend on TZ.
    old_tz = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    try:
        import time

        time.tzset()
        return write_layer(store, root, default_config(), parent, author, message, trailers,
                           when=when)
    finally:
        if old_tz is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old_tz
        time.tzset()


def build(store: Store, container: str | None = CONTAINER, driver: str | None = None) -> Demo:
    """The sample image and (unless `container` is None) a container on it holding one
    pending change. An existing demo container is reused as it is. Works without root:
    create() falls back to the vfs driver when overlay cannot mount."""
    from layerctl.containers.lifecycle import create
    from layerctl.containers.state import find

    ids = build_image(store)
    if container is None:
        return Demo(IMAGE, ids, None)
    if find(store, container) is not None:
        return Demo(IMAGE, ids, container)
    c, notice = create(store, IMAGE, name=container, driver=driver)
    write_pending(store, c.name)
    return Demo(IMAGE, ids, c.name, notice)


def write_pending(store: Store, container: str, name: str = PENDING_FILE,
                  text: str = PENDING_TEXT) -> str:
    """Write a file into the container (through its upper dir or vfs rootfs, so no mount
    is needed); returns the real path written."""
    from layerctl.containers.drivers import driver_for
    from layerctl.containers.state import resolve

    c = resolve(store, container)
    path = os.path.join(driver_for(c).top(store, c), name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def merged_names(store: Store, layer_id: str) -> list[str]:
    """The file names the merged view of a layer shows (the picture's bottom row)."""
    from layerctl.store.fstree import read_dir

    return sorted(n.decode() for n in read_dir(store, read_layer(store, layer_id).root).files)
