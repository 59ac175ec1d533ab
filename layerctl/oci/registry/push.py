"""`layerctl push IMAGE [REF]`: an image's layers, config and manifest to a registry.

Each layer travels as its deterministic changeset tar (layertar), gzip-compressed
deterministically (pgzip): the same layer always gives the same blob. The blob
of each layer is remembered in the store (cache/blobs/<layer id>.json: digest,
size, DiffID), so a later push asks the registry (HEAD) before making the tar at
all, and a layer the registry has is never compressed or sent again ("Layer
already exists"). A pulled layer is first offered as the blob its registry
served (origin: HEAD here, a cross-repository mount on the same registry, or a
copy from the registry it came from), and a loaded or pulled layer whose tar
differs from layerctl's is sent as that original tar (tarsplit). The config
lists the DiffIDs of the tars actually sent (the image's own config bytes when
they still hold); the manifest is the one a registry served for the image when
it names exactly these blobs, else an OCI image manifest.
"""

from __future__ import annotations

import json
import os
import queue
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from layerctl import faults
from layerctl.changeset.tar import LayerTarWriter
from layerctl.changeset.tarsplit import BrokenRecord, emit_checked, layer_record
from layerctl.changeset.write import write_changeset
from layerctl.compress.gzip import GzipWriter
from layerctl.errors import BadInput, LayerctlError, NotFound
from layerctl.images import ImageName, chain, image_layer
from layerctl.oci.events import Event, Progress, quiet, throughput
from layerctl.oci.model import (
    DOCKER_LAYER,
    OCI_CONFIG,
    OCI_LAYER,
    OCI_MANIFEST,
    Descriptor,
    layer_media_type,
    manifest_blob,
    sha256_digest,
)
from layerctl.oci.origin import blob_origins, image_config, manifest_origins
from layerctl.oci.registry.client import RegistryClient
from layerctl.oci.registry.reference import Reference
from layerctl.oci.registry.transport import Interrupted, RegistryError, TlsOptions
from layerctl.store.blobread import BlobReader
from layerctl.store.layers import Layer
from layerctl.words import short_digest

UPLOAD_CHUNK = 1 << 20


@dataclass(frozen=True)
class PushResult:
    reference: Reference
    digest: str  # the manifest's
    size: int
    pushed: int  # layers uploaded
    existing: int  # layers the registry had
    broken: dict[str, str] = field(default_factory=dict)  # layer id -> why its record failed


def _cache_path(store: object, layer_id: str) -> str:
    return store.path("cache", "blobs", layer_id + ".json")


def cached_blob(store: object, layer_id: str) -> tuple[str, int, str] | None:
    """(digest, size, DiffID) of the gzip blob layerctl made for a layer, if known."""
    try:
        with open(_cache_path(store, layer_id), encoding="utf-8") as f:
            data = json.load(f)
        return str(data["digest"]), int(data["size"]), str(data["diff_id"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _remember_blob(store: object, layer_id: str, digest: str, size: int, diff_id: str) -> None:
    path = _cache_path(store, layer_id)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".blob-")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"digest": digest, "size": size, "diff_id": diff_id}, f)
    os.replace(tmp, path)


def _file_chunks(path: str, size: int, short: str, report: Progress) -> Iterator[bytes]:
    done = 0
    report(Event(short, "Pushing", 0, size))
    with open(path, "rb") as f:
        while chunk := f.read(UPLOAD_CHUNK):
            done += len(chunk)
            report(Event(short, "Pushing", done, size))
            yield chunk


_END = object()  # ends an upload's chunks
_ABORT = object()  # makes its PATCH fail


class _Aborted(Exception):
    """The blob being streamed will not be finished."""


class _Upload:
    """A blob sent to the registry while it is being made (issue 16): a thread runs
    one PATCH whose body is what write() is given, so compressing and uploading
    overlap. At most QUEUED chunks wait: the producer slows to the wire's speed.
    A failure does not stop the producer (the thread drains the queue); finish()
    then says False and the caller sends the file it wrote alongside."""

    QUEUED = 16

    def __init__(self, client: RegistryClient, what: str) -> None:
        self.client = client
        self.what = what
        self.queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self.slots = threading.Semaphore(self.QUEUED)
        self.location: str | None = None  # of the upload, once begun
        self.patched: str | None = None  # where to finish it, once all is sent
        self.error: BaseException | None = None
        self.closed = False  # _END or _ABORT was taken off the queue
        self.thread = threading.Thread(target=self._run, name="push-upload", daemon=True)
        self.thread.start()

    def _take(self) -> object:
        item = self.queue.get()
        self.slots.release()
        self.closed = item is _END or item is _ABORT
        return item

    def _chunks(self) -> Iterator[bytes]:
        while (item := self._take()) is not _END:
            if item is _ABORT:
                raise _Aborted
            yield item  # type: ignore[misc]

    def _run(self) -> None:
        try:
            self.location = self.client.begin_upload(self.what)
            faults.point("push.stream-blob")
            self.patched = self.client.patch_upload(self.location, self._chunks(), self.what)
        except BaseException as e:  # noqa: BLE001 - reported by finish(), the file is sent
            self.error = e
            while not self.closed:
                self._take()

    def write(self, data: bytes) -> None:
        if data and self.error is None:
            self.slots.acquire()
            self.queue.put(data)

    def end(self) -> None:
        """All bytes are written: wait until the registry has them."""
        self.slots.acquire()
        self.queue.put(_END)
        self.thread.join()

    def finish(self, digest: str) -> bool:
        """Complete the upload as `digest`: False if it cannot be (nothing is then
        left begun at the registry)."""
        if self.error is None and self.patched is not None:
            try:
                self.client.finish_upload(self.patched, digest, self.what)
                return True
            except LayerctlError:
                pass
        self.cancel()
        return False

    def cancel(self) -> None:
        if self.thread.is_alive():
            self.slots.acquire()
            self.queue.put(_ABORT)
            self.thread.join()
        location, self.location = self.patched or self.location, None
        self.patched = None
        if location is not None:
            self.client.cancel_upload(location)


class _Tee:
    """gzip's output: to the spool file, to the upload, and as progress."""

    def __init__(self, out: BinaryIO, upload: _Upload, short: str, report: Progress) -> None:
        self.out = out
        self.upload = upload
        self.short = short
        self.report = report
        self.done = 0

    def write(self, data: bytes) -> int:
        self.out.write(data)
        self.upload.write(data)
        self.done += len(data)  # the size is known at the end: Pushing 0/size comes then
        self.report(Event(self.short, "Pushing", self.done, self.done))
        return len(data)


class _LayerPusher:
    def __init__(self, store: object, client: RegistryClient, ref: Reference,
                 tls: TlsOptions | None, report: Progress) -> None:
        self.store = store
        self.client = client
        self.ref = ref
        self.tls = tls
        self.report = report
        self.pushed = self.existing = 0
        self.bytes = 0  # of the blobs uploaded
        self.broken: dict[str, str] = {}  # layer id -> why its tar-split record failed
        self.unreachable: set[str] = set()  # origin registries that could not serve a blob

    def push(self, parent: Layer | None, layer: Layer) -> tuple[Descriptor, str]:
        """(blob descriptor, DiffID of the tar in it)."""
        short = short_digest(layer.source_diff_id or layer.diff_id or layer.id)
        found = self._original(layer, short)
        if found is not None:
            return found
        media_type = layer_media_type("gzip")
        known = cached_blob(self.store, layer.id)
        if known and self.client.has_blob(known[0]):
            return self._exists(short, Descriptor(media_type, known[0], known[1])), known[2]
        directory = self.store.path("cache", "blobs")
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".push-", suffix=".gz")
        os.close(fd)
        upload: _Upload | None = None
        try:
            diff_id, digest, size, upload = self._gzip(parent, layer, tmp, short)
            _remember_blob(self.store, layer.id, digest, size, diff_id)
            desc = Descriptor(media_type, digest, size)
            if self.client.has_blob(digest):
                return self._exists(short, desc), diff_id
            if upload.finish(digest):
                upload = None
                self.report(Event(short, "Pushing", 0, size))
                self.report(Event(short, "Pushing", size, size))
            else:  # the streamed upload failed: send the file
                upload = None
                self.client.push_blob(
                    digest, _file_chunks(tmp, size, short, self.report), what=f"layer {short}"
                )
        finally:
            if upload is not None:  # made but not sent (already there, or an error)
                upload.cancel()
            os.unlink(tmp)
        self.pushed += 1
        self.bytes += size
        self.report(Event(short, "Pushed"))
        return desc, diff_id

    def _gzip(self, parent: Layer | None, layer: Layer, path: str, short: str
              ) -> tuple[str, str, int, _Upload]:
        """The layer's tar, gzipped into `path` and streamed to the registry as it is
        made: its original tar when it came with another than layerctl's (tarsplit),
        else its changeset. (DiffID, digest, size, the upload to finish)"""
        record = None if layer.id in self.broken else layer_record(self.store, layer)
        upload = _Upload(self.client, f"layer {short}")
        with open(path, "wb") as out:
            gz = GzipWriter(_Tee(out, upload, short, self.report))
            try:
                if record is not None:
                    with BlobReader.for_store(self.store) as reader:
                        diff_id = emit_checked(record[0], record[1], reader,
                                               LayerTarWriter(gz))
                else:
                    diff_id, _size = write_changeset(
                        self.store, parent.root if parent else None, layer.root, gz
                    )
                digest = gz.close()
                faults.point("push.blob-made")
                upload.end()  # the registry has every byte
            except BrokenRecord as e:
                gz.abort()
                upload.cancel()
                self.broken[layer.id] = str(e)
                out.truncate(0)
                out.seek(0)
                return self._gzip(parent, layer, path, short)  # its changeset, no record
            except BaseException:
                gz.abort()
                upload.cancel()
                raise
        return diff_id, digest, gz.size, upload

    def _original(self, layer: Layer, short: str) -> tuple[Descriptor, str] | None:
        """The blob a registry served for this layer, if the destination has it or can
        get it without layerctl compressing anything: a HEAD, a cross-repository mount
        on the same registry, or a copy from the registry it came from."""
        origins = blob_origins(self.store, layer.id)
        for origin in origins:
            desc = Descriptor(origin["media_type"], origin["digest"], origin["size"])
            if self.client.has_blob(origin["digest"]):
                return self._exists(short, desc), origin["diff_id"]
        here = self.ref.domain
        for origin in origins:
            if origin["registry"] == here and origin["repository"] != self.ref.path:
                if self.client.mount_blob(origin["digest"], origin["repository"]):
                    desc = Descriptor(origin["media_type"], origin["digest"], origin["size"])
                    self.existing += 1
                    self.report(Event(short, f"Mounted from {origin['repository']}"))
                    return desc, origin["diff_id"]
        for origin in origins:
            if origin["registry"] not in (here, *self.unreachable) and self._copy(origin, short):
                desc = Descriptor(origin["media_type"], origin["digest"], origin["size"])
                return desc, origin["diff_id"]
        return None

    def _copy(self, origin: dict, short: str) -> bool:
        """Stream the original blob from its registry to this one (as skopeo copies);
        False if the origin cannot serve it (gone, unreachable, no credentials)."""
        source = Reference(origin["registry"], origin["repository"], None, origin["digest"])
        try:
            with RegistryClient(source, self.tls) as there:
                chunks = there.blob_chunks(origin["digest"], origin["size"],
                                           what=f"layer {short} from {source.name}")
                self.client.push_blob(origin["digest"], _progress(chunks, origin["size"],
                                                                  short, self.report),
                                      what=f"layer {short}")
        except RegistryError as e:
            if not isinstance(e, Interrupted):  # gone, refusing, no credentials: ask once
                self.unreachable.add(origin["registry"])
            return False
        except LayerctlError:  # e.g. it served more bytes than the descriptor says
            return False
        self.pushed += 1
        self.bytes += origin["size"]
        self.report(Event(short, "Pushed"))
        return True

    def _exists(self, short: str, desc: Descriptor) -> Descriptor:
        self.existing += 1
        self.report(Event(short, "Layer already exists"))
        return desc


def _progress(chunks: Iterator[bytes], size: int, short: str, report: Progress
              ) -> Iterator[bytes]:
    done = 0
    report(Event(short, "Pushing", 0, size))
    for chunk in chunks:
        done += len(chunk)
        report(Event(short, "Pushing", done, size))
        yield chunk


def _manifest(store: object, top: Layer, config: Descriptor, layers: list[Descriptor]
              ) -> tuple[bytes, str]:
    """The image's manifest as a registry served it when it names this very config and
    these very blobs (so a pushed-back image keeps its digest), else an OCI manifest."""
    want = [(d.media_type, d.digest, d.size) for d in layers]
    for media_type, raw in manifest_origins(store, top.id):
        try:
            data = json.loads(raw)
            got = [(d["mediaType"], d["digest"], d["size"]) for d in data["layers"]]
            same_config = (data["config"]["digest"], data["config"]["size"]) == (
                config.digest, config.size)
        except (ValueError, KeyError, TypeError):
            continue
        if same_config and got == want:
            return raw, media_type
    oci = [Descriptor(_OCI_TYPES.get(d.media_type, d.media_type), d.digest, d.size)
           for d in layers]
    return manifest_blob(config, oci), OCI_MANIFEST


_OCI_TYPES = {DOCKER_LAYER + ".gzip": layer_media_type("gzip"), DOCKER_LAYER: OCI_LAYER}


def push(
    store: object,
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
            report(Event(short_digest(layer.diff_id or layer.id), "Preparing"))
        pusher = _LayerPusher(store, client, ref, tls, report)
        started = time.monotonic()
        descriptors, diff_ids = [], []
        parent = None
        for layer in layers:
            desc, diff_id = pusher.push(parent, layer)
            descriptors.append(desc)
            diff_ids.append(diff_id)
            parent = layer
        config = image_config(store, layers, diff_ids)
        config_digest = sha256_digest(config)
        if not client.has_blob(config_digest):
            client.push_blob(config_digest, config, what="image config")
        manifest, manifest_type = _manifest(
            store, layers[-1], Descriptor(OCI_CONFIG, config_digest, len(config)), descriptors)
        digest = client.put_manifest(tag, manifest, manifest_type)
    if pusher.pushed:
        report(Event(None, f"Pushed {throughput(pusher.bytes, time.monotonic() - started)}"))
    report(Event(None, f"{tag}: digest: {digest} size: {len(manifest)}"))
    return PushResult(ref.with_tag(tag), digest, len(manifest), pusher.pushed, pusher.existing,
                      pusher.broken)
