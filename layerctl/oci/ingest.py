"""Bringing images into the store: configs and layer blobs in, layer commits and tags out.

For each layer of each image, base first:

1. a stored layer with the same parent and DiffID (chains.LayerIndex) is reused;
2. otherwise its blob is opened, hashed (the blob digest), decompressed,
   hashed again (the DiffID) and applied with tarapply onto the parent's tree
   (OCI whiteouts), into a staged pack (staging.Staging), and checked against
   the descriptor's digest and size and the config's rootfs.diff_ids;
3. the layer's DiffID recorded in its commit is that of layerctl's own
   changeset tar of the applied layer (so that `save` reproduces it); the
   source's DiffID, when different, becomes the Source-DiffID trailer.

Only when every layer of every image is verified do the staged packs land and
the commits and tags get written: a bad archive leaves the store as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from layerctl import faults, heap
from layerctl.changeset.apply import DEFAULT_LIMITS, Limits, apply_layer_tar
from layerctl.changeset.tarsplit import SOURCE_TAR, TarRecorder
from layerctl.compress.detect import NONE, open_decompressed
from layerctl.containers import mirror as layermirror
from layerctl.errors import BadInput
from layerctl.hashing import HashingReader
from layerctl.images import ImageName, canonical_json, set_tag
from layerctl.oci.chains import LayerIndex
from layerctl.oci.layerpull import KEEP_FOR_DIFF_ID, KeepingWriter
from layerctl.oci.model import (
    MAX_IMAGES,
    BlobOpener,
    History,
    LayerBlob,
    SourceImage,
    layer_config,
    layer_history,
    parse_config,
    sha256_digest,
)
from layerctl.store.blobread import BlobReader
from layerctl.store.edit import TreeEditor
from layerctl.store.fstree import DirRef
from layerctl.store.layers import Layer, read_layer, write_layer
from layerctl.store.staging import Staging

if TYPE_CHECKING:
    from layerctl.containers.layerbuild import Pending
    from layerctl.store.repo import Store


@dataclass(frozen=True)
class LayerEvent:
    """Progress of one layer: status is "exists", "loading" or "loaded"."""

    image: int  # index of the image in the batch
    layer: int  # index of the layer in the image
    layers: int  # layers in the image
    diff_id: str  # as the image's config gives it
    status: str


@dataclass
class LoadedImage:
    tags: list[ImageName]
    layer_ids: list[str]  # base first
    existed: list[bool]  # per layer: it was already in the store

    @property
    def top(self) -> str:
        return self.layer_ids[-1]


@dataclass(eq=False)
class _Plan:
    """A layer commit to write once everything is verified."""

    parent: _Plan | str | None
    root: DirRef
    config: dict
    history: History
    diff_id: str  # of layerctl's changeset tar
    source_diff_id: str
    size: int
    source: dict[bytes, bytes] | bytes | None = None  # write_layer's source/ (tar-split...)
    like: Layer | None = None  # a stored layer this one copies (another config only)
    layer_id: str | None = None
    layer_dir: Pending | None = None  # its overlay layer dir, written, not yet named

    @property
    def parent_id(self) -> str | None:
        return self.parent.layer_id if isinstance(self.parent, _Plan) else self.parent


_Node = _Plan | str  # a planned layer, or the id of a stored one


@dataclass
class _Ingest:
    store: Store
    staging: Staging
    open_blob: BlobOpener
    label: str
    limits: Limits
    progress: Callable[[LayerEvent], None] | None
    index: LayerIndex = field(init=False)
    planned: dict[tuple, _Plan] = field(default_factory=dict)
    order: list[_Plan] = field(default_factory=list)
    stored: dict[str, Layer] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.index = LayerIndex(self.store)

    def _where(self, what: str) -> str:
        return f"{self.label}: {what}" if self.label else what

    def _event(self, i: int, j: int, n: int, diff_id: str, status: str) -> None:
        if self.progress is not None:
            self.progress(LayerEvent(i, j, n, diff_id, status))

    def _root(self, node: _Node | None) -> DirRef | None:
        if node is None:
            return None
        return node.root if isinstance(node, _Plan) else self.stored[node].root

    def image(self, i: int, img: SourceImage, config: dict) -> tuple[list[_Node], list[bool]]:
        diff_ids = config["rootfs"]["diff_ids"]
        wanted = layer_config(config)
        history = layer_history(config)
        chain: list[_Node] = []
        existed: list[bool] = []
        for j, (blob, diff_id) in enumerate(zip(img.layers, diff_ids, strict=True)):
            parent = chain[-1] if chain else None
            key = (parent if not isinstance(parent, _Plan) else id(parent), diff_id)
            node: _Node | None = self.planned.get(key)
            if node is None and not isinstance(parent, _Plan):
                found = self.index.find(parent, diff_id)
                if found is not None:
                    self.stored[found.id] = found
                    node = found.id
            if node is None:
                self._event(i, j, len(diff_ids), diff_id, "loading")
                node = self._apply(parent, blob, diff_id, history[j], wanted)
                self.planned[key] = node
                self.order.append(node)
                self._event(i, j, len(diff_ids), diff_id, "loaded")
                existed.append(False)
            else:
                self._event(i, j, len(diff_ids), diff_id, "exists")
                existed.append(True)
            chain.append(node)
        if chain:
            chain[-1] = self._with_config(chain[-1], wanted)
        return chain, existed

    def _with_config(self, node: _Node, wanted: dict) -> _Node:
        """The top layer carries the image's config: the same layer, or a sibling
        commit of the same tree when the stored or planned one has another config."""
        current = node.config if isinstance(node, _Plan) else self.stored[node].config
        if current == wanted:
            return node
        key = (id(node) if isinstance(node, _Plan) else node, "config", canonical_json(wanted))
        found = self.planned.get(key)
        if found is not None:
            return found
        if isinstance(node, _Plan):
            plan = _Plan(node.parent, node.root, wanted, node.history, node.diff_id,
                         node.source_diff_id, node.size, source=node.source,
                         layer_dir=node.layer_dir)  # the same changes: the same dir
            node.layer_dir = None
        else:
            layer = self.stored[node]
            plan = _Plan(layer.parent, layer.root, wanted, None, layer.diff_id,
                         layer.source_diff_id, layer.size, source=layer.source, like=layer)
        self.planned[key] = plan
        self.order.append(plan)
        return plan

    def _apply(
        self, parent: _Node | None, blob: LayerBlob, diff_id: str, history: History, config: dict
    ) -> _Plan:
        where = self._where(blob.source)
        parent_root = self._root(parent)
        raw = self.open_blob(blob)
        mirror = None
        try:
            hashed = HashingReader(raw)
            stream = open_decompressed(hashed)
            plain = stream.compression == NONE
            tar = hashed if plain else HashingReader(stream)
            recorder = TarRecorder(stream if plain else tar)
            mirror = layermirror.start(self.staging, parent_root)
            with self.staging.pack_writer() as packer:
                writer = KeepingWriter(packer, KEEP_FOR_DIFF_ID)
                editor = TreeEditor(self.staging, parent_root)
                try:
                    stats = apply_layer_tar(editor, writer, recorder, limits=self.limits,
                                            recorder=recorder, mirror=mirror)
                    tar.drain()
                    hashed.drain()
                except BadInput as e:
                    self._check_blob(blob, hashed, where, drain=True)
                    raise BadInput(f"{where}: {e}") from None
                self._check_blob(blob, hashed, where)
                if tar.digest != diff_id:
                    raise BadInput(
                        f"{where}: DiffID mismatch: the config says {diff_id}, "
                        f"the layer's tar is {tar.digest}"
                    )
                root = editor.write(packer)
                packer.finish()
            self.staging.add(packer)
            with BlobReader.for_store(self.staging, self.staging.bases,
                                      kept=writer.kept) as reader:
                ours, layer_dir = layermirror.diff_id_and_dir(self.staging, parent_root, root,
                                                             reader, mirror)
        finally:
            raw.close()
            if mirror is not None:
                mirror.stop()  # after an error; a dir it finished is layer_dir's
        writer.kept = {}
        source = None if diff_id == ours else {SOURCE_TAR: recorder.finish(diff_id)}
        return _Plan(parent, root, config, history, ours, "" if diff_id == ours else diff_id,
                     stats.bytes, source=source, layer_dir=layer_dir)

    def _check_blob(
        self, blob: LayerBlob, hashed: HashingReader, where: str, drain: bool = False
    ) -> None:
        if blob.digest is None and blob.size is None:
            return
        if drain:
            try:
                hashed.drain()
            except BadInput:
                return
        if blob.size is not None and hashed.count != blob.size:
            raise BadInput(f"{where}: size mismatch: the manifest says {blob.size} bytes, "
                           f"the blob has {hashed.count}")
        if blob.digest is not None and hashed.digest != blob.digest:
            raise BadInput(f"{where}: digest mismatch: expected {blob.digest}, "
                           f"the blob is {hashed.digest}")

    def commit(self) -> None:
        """Write the planned layer commits, parents first (their packs have landed)."""
        for plan in self.order:
            if plan.like is not None:
                like = plan.like
                plan.layer_id = write_layer(
                    self.store, plan.root, plan.config, plan.parent_id, like.author,
                    like.message, like.trailers, when=like.author_time, source=plan.source,
                )
                continue
            h = plan.history
            trailers = {
                "DiffID": plan.diff_id,
                "Size": str(plan.size),
                "Created-By": h.created_by,
                "Source-DiffID": plan.source_diff_id,
            }
            plan.layer_id = write_layer(
                self.store, plan.root, plan.config, plan.parent_id, h.author, h.message,
                trailers, when=h.when, source=plan.source,
            )


def _check_image(img: SourceImage, where: str) -> dict:
    if img.config_digest is not None and sha256_digest(img.config_raw) != img.config_digest:
        raise BadInput(f"{where}: {img.config_source}: digest mismatch: expected "
                       f"{img.config_digest}, the config is {sha256_digest(img.config_raw)}")
    config = parse_config(img.config_raw, f"{where}: {img.config_source}")
    count = len(config["rootfs"]["diff_ids"])
    if not img.layers:
        raise BadInput(f"{where}: {img.label} has no layers")
    if count != len(img.layers):
        raise BadInput(f"{where}: {img.label} lists {len(img.layers)} layers but its config "
                       f"{img.config_source} has {count} rootfs.diff_ids")
    return config


@heap.bulk()
def ingest(
    store: Store,
    images: list[SourceImage],
    open_blob: BlobOpener,
    *,
    label: str = "",
    limits: Limits = DEFAULT_LIMITS,
    progress: Callable[[LayerEvent], None] | None = None,
) -> list[LoadedImage]:
    """Bring `images` into the store, all or nothing, and tag them; returns what was loaded.

    `open_blob(layer)` gives a layer's blob as a readable stream; it is called
    only for layers the store lacks. `label` (e.g. the archive's name) prefixes
    every error message.
    """
    where = label or "image"
    if len(images) > MAX_IMAGES:
        raise BadInput(f"{where}: {len(images)} images, more than the limit of {MAX_IMAGES}")
    configs = [_check_image(img, where) for img in images]
    job: _Ingest | None = None
    try:
        with Staging(store) as staging:
            job = _Ingest(store, staging, open_blob, label, limits, progress)
            chains = [job.image(i, img, cfg)
                      for i, (img, cfg) in enumerate(zip(images, configs, strict=True))]
            faults.point("load.land-packs")
            staging.land()
        faults.point("load.write-layers")
        job.commit()
        from layerctl.oci.origin import keep_config  # origin imports oci.image (re-exports us)

        loaded = []
        for img, cfg, (chain, existed) in zip(images, configs, chains, strict=True):
            ids = [n.layer_id if isinstance(n, _Plan) else n for n in chain]
            if ids:  # the top carries the image's own config bytes (its image ID)
                top = keep_config(store, read_layer(store, ids[-1]), layer_config(cfg),
                                  img.config_raw)
                ids[-1] = top.id
            _land_layer_dirs(chain, ids)
            loaded.append(LoadedImage(list(img.tags), ids, existed))
            if ids:
                for name in img.tags:
                    faults.point("load.move-tag")
                    set_tag(store, name, ids[-1])
        return loaded
    finally:
        for plan in job.order if job is not None else ():
            if plan.layer_dir is not None:  # failed, or not in any image's final chain
                plan.layer_dir.discard()


def _land_layer_dirs(chain: list[_Node], ids: list[str]) -> None:
    """Name the layer dirs written at the apply after the layers containers will use
    (the top's may be a sibling commit carrying the image's config bytes)."""
    for node, layer_id in zip(chain, ids, strict=True):
        if isinstance(node, _Plan) and node.layer_dir is not None:
            node.layer_dir.land(layer_id)
            node.layer_dir = None
