"""`layerctl push IMAGE [REF]`: an image's layers, config and manifest to a registry.

Each layer travels as its deterministic changeset tar (layertar), gzip-compressed
deterministically (pgzip): the same layer always gives the same blob. The blob
of each layer is remembered in the store (cache/blobs/<layer id>.json: digest,
size, DiffID), so a later push asks the registry (HEAD) before making the tar at
all, and a layer the registry has is never compressed or sent again ("Layer
already exists"). The config lists the DiffIDs of the tars actually sent (a
layer written by an older layerctl may record another); the manifest is an OCI
image manifest.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from layerctl.errors import BadInput, NotFound
from layerctl.images import ImageName, chain, image_layer
from layerctl.oci.changeset import write_changeset
from layerctl.oci.events import Event, Progress, quiet
from layerctl.oci.image import (
    OCI_CONFIG,
    OCI_MANIFEST,
    Descriptor,
    config_blob,
    layer_media_type,
    manifest_blob,
    sha256_digest,
)
from layerctl.oci.pgzip import GzipWriter
from layerctl.oci.references import Reference
from layerctl.oci.registry import RegistryClient, TlsOptions
from layerctl.store.layers import Layer

if TYPE_CHECKING:
    from layerctl.store.repo import Store

UPLOAD_CHUNK = 1 << 20


@dataclass(frozen=True)
class PushResult:
    reference: Reference
    digest: str  # the manifest's
    size: int
    pushed: int  # layers uploaded
    existing: int  # layers the registry had


def _cache_path(store: Store, layer_id: str) -> str:
    return store.path("cache", "blobs", layer_id + ".json")


def cached_blob(store: Store, layer_id: str) -> tuple[str, int, str] | None:
    """(digest, size, DiffID) of the gzip blob layerctl made for a layer, if known."""
    try:
        with open(_cache_path(store, layer_id), encoding="utf-8") as f:
            data = json.load(f)
        return str(data["digest"]), int(data["size"]), str(data["diff_id"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _remember_blob(store: Store, layer_id: str, digest: str, size: int, diff_id: str) -> None:
    path = _cache_path(store, layer_id)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".blob-")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"digest": digest, "size": size, "diff_id": diff_id}, f)
    os.replace(tmp, path)


def _short(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


def _file_chunks(path: str, size: int, short: str, report: Progress) -> Iterator[bytes]:
    done = 0
    report(Event(short, "Pushing", 0, size))
    with open(path, "rb") as f:
        while chunk := f.read(UPLOAD_CHUNK):
            done += len(chunk)
            report(Event(short, "Pushing", done, size))
            yield chunk


class _LayerPusher:
    def __init__(self, store: Store, client: RegistryClient, report: Progress) -> None:
        self.store = store
        self.client = client
        self.report = report
        self.pushed = self.existing = 0

    def push(self, parent: Layer | None, layer: Layer) -> tuple[Descriptor, str]:
        """(blob descriptor, DiffID of the tar in it)."""
        short = _short(layer.diff_id or layer.id)
        media_type = layer_media_type("gzip")
        known = cached_blob(self.store, layer.id)
        if known and self.client.has_blob(known[0]):
            return self._exists(short, Descriptor(media_type, known[0], known[1])), known[2]
        directory = self.store.path("cache", "blobs")
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".push-", suffix=".gz")
        try:
            with os.fdopen(fd, "wb") as out:
                gz = GzipWriter(out)
                try:
                    diff_id, _size = write_changeset(
                        self.store, parent.root if parent else None, layer.root, gz
                    )
                except BaseException:
                    gz.abort()
                    raise
                digest = gz.close()
            _remember_blob(self.store, layer.id, digest, gz.size, diff_id)
            desc = Descriptor(media_type, digest, gz.size)
            if self.client.has_blob(digest):
                return self._exists(short, desc), diff_id
            self.client.push_blob(
                digest, _file_chunks(tmp, gz.size, short, self.report), what=f"layer {short}"
            )
        finally:
            os.unlink(tmp)
        self.pushed += 1
        self.report(Event(short, "Pushed"))
        return desc, diff_id

    def _exists(self, short: str, desc: Descriptor) -> Descriptor:
        self.existing += 1
        self.report(Event(short, "Layer already exists"))
        return desc


def push(
    store: Store,
    name: ImageName,
    ref: Reference,
    tls: TlsOptions | None = None,
    progress: Callable[[Event], None] | None = None,
) -> PushResult:
    """Push the local image `name` to `ref` (a tag reference)."""
    report = progress or quiet
    if ref.digest:
        raise BadInput(f"cannot push to a digest reference ({ref.familiar()}); give a tag")
    top = image_layer(store, name)
    if top is None:
        raise NotFound(f"no such image: {name}")
    layers = chain(store, top)
    tag = ref.tag or "latest"
    report(Event(None, f"The push refers to repository [{ref.name}]"))
    with RegistryClient(ref, tls) as client:
        client.ping()
        for layer in layers:
            report(Event(_short(layer.diff_id or layer.id), "Preparing"))
        pusher = _LayerPusher(store, client, report)
        descriptors, diff_ids = [], []
        parent = None
        for layer in layers:
            desc, diff_id = pusher.push(parent, layer)
            descriptors.append(desc)
            diff_ids.append(diff_id)
            parent = layer
        config = config_blob(layers, diff_ids)
        config_digest = sha256_digest(config)
        if not client.has_blob(config_digest):
            client.push_blob(config_digest, config, what="image config")
        manifest = manifest_blob(Descriptor(OCI_CONFIG, config_digest, len(config)), descriptors)
        digest = client.put_manifest(tag, manifest, OCI_MANIFEST)
    report(Event(None, f"{tag}: digest: {digest} size: {len(manifest)}"))
    return PushResult(ref.with_tag(tag), digest, len(manifest), pusher.pushed, pusher.existing)
