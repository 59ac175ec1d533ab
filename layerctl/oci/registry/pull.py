"""`layerctl pull REF`: an image from a registry into the store, layer by layer.

1. The manifest (an index is resolved to the platform's manifest) and the
   config are fetched; the config's rootfs.diff_ids and the store's layers
   (chains.LayerIndex: parent + DiffID, or Source-DiffID) tell which layers
   are already here: those print "Already exists" and are never downloaded.
2. Each missing layer, in order, is hashed, decompressed (on a reader thread),
   hashed again and applied onto its parent's tree: the first streamed from the
   registry, the next ones from the spool files they were downloaded into while
   the layers below were applied (oci/registry/downloads.py, at most
   --max-concurrent-downloads at once). Only when its blob digest, size and
   DiffID check out do its pack land and its commit get written
   (layerpull.land_layer).
3. Each landed layer moves `refs/pull/<manifest digest>`, so an interrupted
   pull keeps every completed layer: a retry finds them by chain and
   downloads only the rest. At the end the tag takes over and the pull ref
   goes; a digest-only pull (no tag) keeps it as the image's handle.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from layerctl import faults
from layerctl.compress.gunzip import GunzipChunks
from layerctl.containers import layerbuild
from layerctl.errors import BadInput
from layerctl.images import ImageName, image_layer, set_tag
from layerctl.oci.events import Event, Progress, quiet, throughput
from layerctl.oci.layerpull import PULL_REFS, LayerStream, PullIndex, land_layer, retag_config
from layerctl.oci.model import (
    INDEX_TYPES,
    layer_config,
    layer_history,
    parse_config,
    parse_descriptor,
    source_image,
)
from layerctl.oci.origin import keep_config, remember_blob, remember_manifest
from layerctl.oci.platform import Platform, choose, parse_platform
from layerctl.oci.registry.client import (
    DOCKER_SCHEMA1,
    DOCKER_SCHEMA1_SIGNED,
    MAX_CONFIG,
    Manifest,
    RegistryClient,
)
from layerctl.oci.registry.downloads import DEFAULT_LIMIT, Downloads, check_limit, spool_chunks
from layerctl.oci.registry.prefetch import Prefetch
from layerctl.oci.registry.reference import Reference
from layerctl.oci.registry.transport import Interrupted, TlsOptions
from layerctl.words import short_digest

if TYPE_CHECKING:
    from layerctl.store.repo import Store


@dataclass(frozen=True)
class PullResult:
    reference: Reference
    digest: str  # the (platform) manifest's
    layer_id: str  # the top layer
    name: ImageName | None  # the local tag, None for a digest-only pull
    downloaded: int  # layers transferred
    existing: int  # layers found in the store
    up_to_date: bool  # the tag already pointed at this image


def choose_manifest(index: dict, platform: Platform, where: str) -> dict:
    """The descriptor in `index` for `platform` (oci.platform's rule)."""
    entries = index.get("manifests")
    if not isinstance(entries, list):
        raise BadInput(f"{where}: manifests must be a list")
    return entries[choose([e.get("platform") if isinstance(e, dict) else None
                           for e in entries], platform, where)]


class _Puller:
    def __init__(
        self, store: Store, client: RegistryClient, ref: Reference, report: Progress
    ) -> None:
        self.store = store
        self.client = client
        self.ref = ref
        self.report = report

    def resolve(self, platform: str | None) -> Manifest:
        """The image manifest for the wanted platform (through an index if need be)."""
        manifest = self.client.get_manifest(self.ref.api_ref)
        if manifest.media_type in (DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED):
            raise BadInput(
                f"{self.ref.familiar()}: Docker schema 1 manifests are not supported "
                "(deprecated since 2017); push the image again with a current client"
            )
        data = manifest.json()
        is_index = manifest.media_type in INDEX_TYPES or (
            not manifest.media_type and "manifests" in data
        )
        if not is_index:
            return manifest
        entry = choose_manifest(data, parse_platform(platform), self.ref.familiar())
        digest = entry.get("digest")
        if not isinstance(digest, str) or not digest.startswith("sha256:"):
            raise BadInput(f"{self.ref.familiar()}: index entry without a sha256 digest")
        return self.client.get_manifest(digest)

    def open_layer(
        self, downloads: Downloads, k: int, blob: object, short: str, where: str
    ) -> LayerStream:
        """The layer's tar, decompressed and hashed on a reader thread when it is gzip
        (the usual case), in this thread otherwise: streamed from the registry, or
        read from the spool of its download ahead. The blob's digest and size are
        checked by the registry client as its last chunk arrives."""
        total = blob.size

        def progress(done: int) -> None:
            self.report(Event(short, "Downloading", done, total))

        def stream(release: Callable[[], None]) -> Iterator[bytes]:
            return _releasing(self.client.blob_chunks(blob.digest, total, what=where), release)

        progress(0)
        kind, got = downloads.take(k, stream, progress)
        if kind == "spool":
            progress(total)
            chunks, on_read = spool_chunks(got), None
        else:
            chunks, on_read = got, progress
        if "gzip" in blob.media_type:
            gunzip = GunzipChunks(chunks, where, on_read)
            return LayerStream(Prefetch(gunzip), lambda: gunzip.digest)
        if on_read is not None:
            chunks = _counted(chunks, on_read)
        return LayerStream.plain(Prefetch(chunks), where)

    def new_client(self) -> RegistryClient:
        """Another client of the same repository, for a download ahead."""
        return RegistryClient(self.ref, self.client.tls)


def _releasing(chunks: Iterator[bytes], release: Callable[[], None]) -> Iterator[bytes]:
    try:
        faults.point("pull.stream-blob")  # on the reader thread, before the first chunk
        yield from chunks
    finally:
        faults.point("pull.stream-ended")
        release()


def _counted(chunks: object, progress: Callable[[int], None]) -> object:
    done = 0
    for chunk in chunks:
        done += len(chunk)
        progress(done)
        yield chunk


def pull(
    store: Store,
    ref: Reference,
    tls: TlsOptions | None = None,
    platform: str | None = None,
    progress: Callable[[Event], None] | None = None,
    max_downloads: int = DEFAULT_LIMIT,
) -> PullResult:
    """Pull `ref` into the store and tag it with its familiar name (unless by digest only);
    at most `max_downloads` layer blobs are downloaded at once."""
    check_limit(max_downloads)
    report = progress or quiet
    name = ImageName(ref.familiar_name, ref.tag) if ref.tag else None
    with RegistryClient(ref, tls) as client:
        puller = _Puller(store, client, ref, report)
        if ref.tag and not ref.digest:
            report(Event(None, f"{ref.tag}: Pulling from {ref.path}"))
        else:
            report(Event(None, f"{ref.digest}: Pulling from {ref.path}"))
        manifest = puller.resolve(platform)
        where = f"{ref.familiar()} ({manifest.digest})"
        data = manifest.json()
        image = source_image(data, b"", where)
        config_size = parse_descriptor(data["config"], f"{where}: config").size
        config_raw = client.read_blob(
            image.config_digest, config_size, MAX_CONFIG, what=f"{where}: image config"
        )
        config = parse_config(config_raw, f"{where}: image config")
        _check_platform(config, platform, where)
        diff_ids = config["rootfs"]["diff_ids"]
        if len(diff_ids) != len(image.layers) or not diff_ids:
            raise BadInput(
                f"{where}: {len(image.layers)} layers in the manifest, "
                f"{len(diff_ids)} in the config"
            )
        started = time.monotonic()
        result = _ingest(store, puller, manifest, image, config, config_raw, where,
                         max_downloads)
        if result.downloaded:
            sent = sum(blob.size for blob in image.layers[result.existing:])
            report(Event(None, f"Downloaded {throughput(sent, time.monotonic() - started)}"))
    up_to_date = False
    if name is not None:
        before = image_layer(store, name)
        up_to_date = before == result.layer_id and result.downloaded == 0
        if not up_to_date:
            faults.point("pull.move-tag")
            set_tag(store, name, result.layer_id, expected=before)
        pull_ref = PULL_REFS + manifest.digest.split(":", 1)[1]
        current = store.ref(pull_ref)
        if current is not None:
            store.delete_ref(pull_ref, current)
    report(Event(None, f"Digest: {manifest.digest}"))
    shown = ref.familiar()
    if up_to_date:
        report(Event(None, f"Status: Image is up to date for {shown}"))
    else:
        report(Event(None, f"Status: Downloaded newer image for {shown}"))
    return PullResult(
        ref, manifest.digest, result.layer_id, name, result.downloaded, result.existing,
        up_to_date,
    )  # fmt: skip


def _pull_layer(
    store: object, puller: _Puller, downloads: Downloads, k: int, blob: object, here: str,
    parent: object, index: PullIndex, pull_ref: str, diff_id: str, history: object,
    wanted: dict, j: int, count: int,
) -> object:
    """Layer j (k-th missing) onto `parent`: landed, the pull ref moved onto it."""
    short = short_digest(blob.digest)
    stream = None
    try:
        faults.point("pull.apply-layer")
        stream = puller.open_layer(downloads, k, blob, short, here)
        layer = land_layer(store, parent, stream, diff_id, history, wanted, here)
    except Interrupted as e:
        raise Interrupted(
            f"pull of {puller.ref.familiar()} interrupted: {e}; {j} of {count} "
            "layers are complete and kept: pull again to resume"
        ) from None
    finally:
        if stream is not None:
            stream.close()
        downloads.done_with(k)
    _remember(store, puller.ref, layer.id, blob, diff_id)
    report = puller.report
    report(Event(short, "Download complete"))
    faults.point("pull.move-progress-ref")
    old = store.ref(pull_ref)
    store.set_ref(pull_ref, old, layer.id, f"pull {puller.ref.familiar()}")
    index.add(layer)
    report(Event(short, "Pull complete"))
    return layer


def _check_platform(config: dict, platform: str | None, where: str) -> None:
    if not platform:
        return
    want_os, want_arch, _ = parse_platform(platform)
    got = (config.get("os", ""), config.get("architecture", ""))
    if got != (want_os, want_arch):
        raise BadInput(f"{where}: the image is for {got[0]}/{got[1]}, not {want_os}/{want_arch}")


@dataclass
class _Ingested:
    layer_id: str
    downloaded: int
    existing: int


def _remember(store: object, ref: Reference, layer_id: str, blob: object, diff_id: str
              ) -> None:
    remember_blob(store, layer_id, ref.domain, ref.path, blob.digest, blob.size,
                  blob.media_type, diff_id)


def _ingest(
    store: Store, puller: _Puller, manifest: Manifest, image: object, config: dict,
    config_raw: bytes, where: str, max_downloads: int,
) -> _Ingested:
    report = puller.report
    diff_ids = config["rootfs"]["diff_ids"]
    wanted = layer_config(config)
    history = layer_history(config)
    index = PullIndex(store)
    pull_ref = PULL_REFS + manifest.digest.split(":", 1)[1]

    # which layers are here already: by chain, before any download
    chain: list[object] = []  # Layer objects, as far as the store has them
    parent_id = None
    for diff_id in diff_ids:
        found = index.find(parent_id, diff_id)
        if found is None:
            break
        chain.append(found)
        parent_id = found.id
    existing = len(chain)
    for blob, layer, diff_id in zip(image.layers[:existing], chain, diff_ids, strict=False):
        report(Event(short_digest(blob.digest), "Already exists"))
        _remember(store, puller.ref, layer.id, blob, diff_id)
    for blob in image.layers[existing:]:
        report(Event(short_digest(blob.digest), "Pulling fs layer"))

    parent = chain[-1] if chain else None
    missing = [(blob, f"{where}: layer {short_digest(blob.digest)}")
               for blob in image.layers[existing:]]
    spool_dir = store.path("objects", "pack")
    os.makedirs(spool_dir, exist_ok=True)
    downloads = Downloads(puller.new_client, spool_dir, missing, max_downloads)
    downloads.start()
    try:
        for k, (blob, here) in enumerate(missing):
            parent = _pull_layer(store, puller, downloads, k, blob, here, parent, index,
                                 pull_ref, diff_ids[existing + k], history[existing + k],
                                 wanted, existing + k, len(diff_ids))  # fmt: skip
    finally:
        downloads.close()
    top = keep_config(store, retag_config(store, parent, wanted), wanted, config_raw)
    if top.id != parent.id:  # a sibling commit of the top layer: the same blob
        _remember(store, puller.ref, top.id, image.layers[-1], diff_ids[-1])
        layerbuild.adopt(store, parent.id, top.id)  # and the same layer dir
    remember_manifest(store, top.id, puller.ref.domain, puller.ref.path, manifest.media_type,
                      manifest.raw)
    if top.id != parent.id:
        old = store.ref(pull_ref)
        store.set_ref(pull_ref, old, top.id, f"pull {puller.ref.familiar()}")
    return _Ingested(top.id, len(diff_ids) - existing, existing)
