"""`layerctl pull REF`: an image from a registry into the store, layer by layer.

1. The manifest (an index is resolved to the platform's manifest) and the
   config are fetched; the config's rootfs.diff_ids and the store's layers
   (chains.LayerIndex: parent + DiffID, or Source-DiffID) tell which layers
   are already here: those print "Already exists" and are never downloaded.
2. Each missing layer is streamed from the registry (a reader thread keeps the
   socket busy), hashed, decompressed, hashed again and applied onto its
   parent's tree. Only when its blob digest, size and DiffID check out do its
   pack land and its commit get written (layerpull.land_layer).
3. Each landed layer moves `refs/pull/<manifest digest>`, so an interrupted
   pull keeps every completed layer: a retry finds them by chain and
   downloads only the rest. At the end the tag takes over and the pull ref
   goes; a digest-only pull (no tag) keeps it as the image's handle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from layerctl import faults
from layerctl.errors import BadInput
from layerctl.images import ImageName, host_arch, image_layer, set_tag
from layerctl.oci.events import Event, Progress, quiet
from layerctl.oci.gunzip import GunzipChunks
from layerctl.oci.image import (
    layer_config,
    layer_history,
    parse_config,
    parse_descriptor,
    source_image,
)
from layerctl.oci.layerpull import PULL_REFS, LayerStream, PullIndex, land_layer, retag_config
from layerctl.oci.prefetch import Prefetch
from layerctl.oci.references import Reference
from layerctl.oci.registry import (
    DOCKER_SCHEMA1,
    DOCKER_SCHEMA1_SIGNED,
    INDEX_TYPES,
    MAX_CONFIG,
    Interrupted,
    Manifest,
    RegistryClient,
    TlsOptions,
)

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


def parse_platform(text: str | None) -> tuple[str, str, str]:
    """'os/arch[/variant]' -> (os, arch, variant); None -> this host's platform."""
    if not text:
        arch = host_arch()
        return "linux", arch, {"arm": "v7", "arm64": "v8"}.get(arch, "")
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise BadInput(f"invalid platform {text!r}: expected os/arch[/variant]")
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(parts[1], parts[1])
    variant = parts[2] if len(parts) == 3 else ""
    return parts[0], arch, variant


def _platform_text(p: dict) -> str:
    return "/".join(x for x in (p.get("os", ""), p.get("architecture", ""), p.get("variant")) if x)


def choose_manifest(index: dict, platform: tuple[str, str, str], where: str) -> dict:
    """The descriptor in `index` for `platform`; a missing variant matches any."""
    want_os, want_arch, want_variant = platform
    entries = index.get("manifests")
    if not isinstance(entries, list):
        raise BadInput(f"{where}: manifests must be a list")
    candidates = []
    for entry in entries:
        p = entry.get("platform") if isinstance(entry, dict) else None
        if not isinstance(p, dict):
            continue
        if p.get("os") != want_os or p.get("architecture") != want_arch:
            continue
        variant = p.get("variant") or ""
        if want_variant and variant and variant != want_variant:
            if not (want_arch == "arm64" and {variant, want_variant} <= {"v8", ""}):
                continue
        # an exact variant first, then entries without one
        candidates.append((variant != want_variant, entry))
    if not candidates:
        offered = sorted(
            {_platform_text(e["platform"]) for e in entries if isinstance(e, dict)
             and isinstance(e.get("platform"), dict)
             and e["platform"].get("os") != "unknown"}
        )  # fmt: skip
        wanted = "/".join(x for x in platform if x)
        raise BadInput(
            f"{where}: no image for platform {wanted} (available: {', '.join(offered) or 'none'})"
        )
    candidates.sort(key=lambda c: c[0])
    return candidates[0][1]


def _short(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


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

    def open_layer(self, blob: object, short: str, where: str) -> LayerStream:
        """The layer's tar, decompressed and hashed on a reader thread when it is gzip
        (the usual case), in this thread otherwise. The blob's digest and size are
        checked by the registry client as its last chunk arrives."""
        chunks = self.client.blob_chunks(blob.digest, blob.size, what=where)
        total = blob.size

        def progress(done: int) -> None:
            self.report(Event(short, "Downloading", done, total))

        progress(0)
        if "gzip" in blob.media_type:
            gunzip = GunzipChunks(chunks, where, progress)
            return LayerStream(Prefetch(gunzip), lambda: gunzip.digest)
        return LayerStream.plain(Prefetch(_counted(chunks, progress)), where)


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
) -> PullResult:
    """Pull `ref` into the store and tag it with its familiar name (unless by digest only)."""
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
        result = _ingest(store, puller, manifest, image, config, where)
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


def _ingest(
    store: Store, puller: _Puller, manifest: Manifest, image: object, config: dict, where: str
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
    for blob in image.layers[:existing]:
        report(Event(_short(blob.digest), "Already exists"))
    for blob in image.layers[existing:]:
        report(Event(_short(blob.digest), "Pulling fs layer"))

    parent = chain[-1] if chain else None
    for j in range(existing, len(diff_ids)):
        blob = image.layers[j]
        short = _short(blob.digest)
        here = f"{where}: layer {short}"
        stream = puller.open_layer(blob, short, here)
        try:
            layer = land_layer(store, parent, stream, diff_ids[j], history[j], wanted, here)
        except Interrupted as e:
            raise Interrupted(
                f"pull of {puller.ref.familiar()} interrupted: {e}; {j} of {len(diff_ids)} "
                "layers are complete and kept: pull again to resume"
            ) from None
        finally:
            stream.close()
        report(Event(short, "Download complete"))
        faults.point("pull.move-progress-ref")
        old = store.ref(pull_ref)
        store.set_ref(pull_ref, old, layer.id, f"pull {puller.ref.familiar()}")
        index.add(layer)
        report(Event(short, "Pull complete"))
        parent = layer
    top = retag_config(store, parent, wanted)
    if top.id != parent.id:
        old = store.ref(pull_ref)
        store.set_ref(pull_ref, old, top.id, f"pull {puller.ref.familiar()}")
    return _Ingested(top.id, len(diff_ids) - existing, existing)
