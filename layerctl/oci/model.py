"""OCI image documents: the config, manifests and indexes layerctl writes, and the
checks and reading of the ones it is given; `ingest` brings an image (config +
layer blobs from any source) into the store.

The pieces a registry client needs: build `SourceImage`s from a manifest it
fetched (`source_image`), pass a blob opener to `ingest`, get layer ids back;
layers already in the store are found by chain before any blob is opened, so
they are never downloaded.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import BinaryIO

from layerctl.errors import BadInput, InvalidName
from layerctl.identity import parse_author
from layerctl.images import ImageName, canonical_json, layer_config, oci_config, parse_name
from layerctl.store.layers import Layer

# -- media types ------------------------------------------------------------------

OCI_LAYOUT_VERSION = "1.0.0"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
CONFIG_TYPES = (OCI_CONFIG, DOCKER_CONFIG)
LAYER_SUFFIX = {"none": "", "gzip": "+gzip", "zstd": "+zstd"}
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"

# -- limits on untrusted documents ----------------------------------------------------

MAX_JSON_BYTES = 8 << 20  # a manifest, index or config
MAX_LAYERS = 1000  # per image
MAX_IMAGES = 10_000  # per archive

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def check_digest(value: object, where: str) -> str:
    if not isinstance(value, str) or not _DIGEST.match(value):
        shown = repr(value)[:80]
        raise BadInput(f"{where}: invalid digest {shown} (expected sha256:<64 hex digits>)")
    return value


def load_json(data: bytes, where: str) -> object:
    """Parse untrusted JSON; any problem is a one-line BadInput naming `where`."""
    try:
        return json.loads(data)
    except RecursionError:
        raise BadInput(f"{where}: malformed JSON (nested too deeply)") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise BadInput(f"{where}: malformed JSON ({str(e).splitlines()[0][:120]})") from None


def _object(value: object, where: str) -> dict:
    if not isinstance(value, dict):
        raise BadInput(f"{where}: expected a JSON object")
    return value


# -- descriptors -----------------------------------------------------------------------


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: dict = field(default_factory=dict, hash=False, compare=False)
    platform: dict | None = field(default=None, hash=False, compare=False)

    def to_json(self) -> dict:
        out: dict = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.platform:
            out["platform"] = self.platform
        if self.annotations:
            out["annotations"] = self.annotations
        return out

    @property
    def blob_path(self) -> str:
        """Where an OCI layout keeps the blob."""
        return "blobs/sha256/" + self.digest.split(":", 1)[1]


def parse_descriptor(value: object, where: str) -> Descriptor:
    d = _object(value, where)
    media_type = d.get("mediaType", "")
    if not isinstance(media_type, str):
        raise BadInput(f"{where}: mediaType is not a string")
    digest = check_digest(d.get("digest"), where)
    size = d.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0 or size >= 1 << 53:
        raise BadInput(f"{where}: invalid size {str(size)[:40]}")
    annotations = d.get("annotations") or {}
    if not isinstance(annotations, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
    ):
        raise BadInput(f"{where}: annotations must map strings to strings")
    platform = d.get("platform")
    if platform is not None and not isinstance(platform, dict):
        raise BadInput(f"{where}: platform is not an object")
    return Descriptor(media_type, digest, size, annotations, platform)


# -- configs ---------------------------------------------------------------------------



def parse_config(data: bytes, where: str) -> dict:
    """An image config, checked enough to be used: rootfs.diff_ids, history, config."""
    config = _object(load_json(data, where), where)
    rootfs = config.get("rootfs")
    if not isinstance(rootfs, dict) or rootfs.get("type") != "layers":
        raise BadInput(f"{where}: rootfs.type must be \"layers\"")
    diff_ids = rootfs.get("diff_ids")
    if not isinstance(diff_ids, list):
        raise BadInput(f"{where}: rootfs.diff_ids must be a list")
    if len(diff_ids) > MAX_LAYERS:
        raise BadInput(f"{where}: {len(diff_ids)} layers, more than the limit of {MAX_LAYERS}")
    for i, d in enumerate(diff_ids):
        check_digest(d, f"{where}: rootfs.diff_ids[{i}]")
    history = config.get("history", [])
    if history is None:
        history = []
    if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
        raise BadInput(f"{where}: history must be a list of objects")
    inner = config.get("config")
    if inner is not None and not isinstance(inner, dict):
        raise BadInput(f"{where}: config must be an object")
    for key in ("architecture", "os", "created", "author"):
        if key in config and not isinstance(config[key], str):
            raise BadInput(f"{where}: {key} must be a string")
    return config


@dataclass(frozen=True)
class History:
    """One layer's history entry, as commit metadata."""

    author: str
    when: int
    message: str
    created_by: str


_TIME = re.compile(
    r"^(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.\d+)?(?:([Zz])|([+-])(\d\d):?(\d\d))?$"
)
UNKNOWN_AUTHOR = "unknown <>"


def parse_time(text: object) -> int | None:
    """Seconds since the epoch of an RFC 3339 time; None if it is not one."""
    if not isinstance(text, str):
        return None
    m = _TIME.match(text.strip())
    if m is None:
        return None
    y, mo, d, h, mi, s = (int(x) for x in m.groups()[:6])
    offset = 0
    if m.group(8):
        offset = (int(m.group(9)) * 60 + int(m.group(10))) * 60
        offset = -offset if m.group(8) == "-" else offset
    try:
        when = datetime(y, mo, d, h, mi, min(s, 59), tzinfo=timezone(timedelta(seconds=offset)))
    except ValueError:
        return None
    return int((when - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds())


def _clean_text(value: object) -> str:
    return value.replace("\0", "") if isinstance(value, str) else ""


def _author(value: object) -> str:
    text = _clean_text(value).strip()
    if not text:
        return UNKNOWN_AUTHOR
    try:
        return parse_author(text)
    except BadInput:
        name = re.sub(r"[<>\n]", " ", text).strip()
        return f"{name} <>" if name else UNKNOWN_AUTHOR


def layer_history(config: dict) -> list[History]:
    """One History per layer (rootfs.diff_ids), from the non-empty history entries."""
    count = len(config["rootfs"]["diff_ids"])
    entries = [h for h in config.get("history") or [] if not h.get("empty_layer")]
    default_when = parse_time(config.get("created")) or 0
    out = []
    for i in range(count):
        h = entries[i] if i < len(entries) else {}
        when = parse_time(h.get("created"))
        when = default_when if when is None else when
        out.append(
            History(
                author=_author(h.get("author")),
                when=min(max(when, 0), (1 << 33) - 1),
                message=_clean_text(h.get("comment")).strip("\n"),
                # a trailer is one line: Dockerfile heredocs put newlines in created_by
                created_by=" ".join(_clean_text(h.get("created_by")).split("\n")).strip(),
            )
        )
    return out


# -- what layerctl writes ------------------------------------------------------------------


def config_blob(layers: list[Layer], diff_ids: list[str] | None = None) -> bytes:
    """The image config of `layers` (base first) as layerctl writes it: canonical JSON,
    so its sha256 is images.image_id(). `diff_ids` overrides the recorded ones."""
    config = oci_config(layers)
    if diff_ids is not None:
        config["rootfs"]["diff_ids"] = list(diff_ids)
    return canonical_json(config)


def manifest_blob(config: Descriptor, layers: list[Descriptor]) -> bytes:
    return canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.to_json(),
            "layers": [d.to_json() for d in layers],
        }
    )


def index_blob(manifests: list[Descriptor]) -> bytes:
    return canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [d.to_json() for d in manifests],
        }
    )


def layer_media_type(compression: str) -> str:
    return OCI_LAYER + LAYER_SUFFIX[compression]


# -- what an archive or registry gives ---------------------------------------------------


@dataclass(frozen=True)
class LayerBlob:
    """One layer as its source has it."""

    source: str  # what to name in messages: an archive path or a digest
    digest: str | None = None  # sha256 of the blob as stored or sent, when known
    size: int | None = None  # its size in bytes, when known
    media_type: str = ""


@dataclass
class SourceImage:
    """An image to ingest: its config (raw bytes) and its layer blobs, base first."""

    label: str  # for messages, e.g. "manifest.json[0]"
    config_raw: bytes
    config_source: str
    layers: list[LayerBlob]
    tags: list[ImageName] = field(default_factory=list)
    config_digest: str | None = None  # checked against sha256(config_raw) when given


BlobOpener = Callable[[LayerBlob], BinaryIO]


def source_image(
    manifest: dict,
    config_raw: bytes,
    label: str,
    tags: list[ImageName] | None = None,
) -> SourceImage:
    """A SourceImage from a parsed OCI / Docker v2 image manifest and its config bytes."""
    manifest = _object(manifest, label)
    if manifest.get("schemaVersion") != 2:
        version = str(manifest.get("schemaVersion"))[:20]
        raise BadInput(f"{label}: unsupported manifest schemaVersion {version}")
    media_type = manifest.get("mediaType", OCI_MANIFEST)
    if media_type not in MANIFEST_TYPES:
        raise BadInput(f"{label}: not an image manifest (mediaType {str(media_type)[:80]!r})")
    config = parse_descriptor(manifest.get("config"), f"{label}: config")
    if config.media_type and config.media_type not in CONFIG_TYPES:
        raise BadInput(f"{label}: not a container image (config mediaType {config.media_type!r})")
    layers = manifest.get("layers")
    if not isinstance(layers, list):
        raise BadInput(f"{label}: layers must be a list")
    if len(layers) > MAX_LAYERS:
        raise BadInput(f"{label}: {len(layers)} layers, more than the limit of {MAX_LAYERS}")
    blobs = []
    for i, value in enumerate(layers):
        d = parse_descriptor(value, f"{label}: layers[{i}]")
        if "layer" not in d.media_type and "rootfs.diff" not in d.media_type:
            raise BadInput(f"{label}: layers[{i}]: not a layer (mediaType {d.media_type!r})")
        if "nondistributable" in d.media_type or "foreign" in d.media_type:
            raise BadInput(f"{label}: layers[{i}]: foreign layers (mediaType {d.media_type}) "
                           "are not supported")
        blobs.append(LayerBlob(d.blob_path, d.digest, d.size, d.media_type))
    return SourceImage(label, config_raw, config.blob_path, blobs, list(tags or []), config.digest)


def tag_of(text: str, where: str) -> ImageName:
    try:
        return parse_name(text)
    except InvalidName as e:
        raise BadInput(f"{where}: {e}") from None


__all__ = [
    "BlobOpener", "Descriptor", "History", "LayerBlob",
    "SourceImage", "config_blob", "index_blob", "layer_config", "layer_history",
    "manifest_blob", "parse_config", "parse_descriptor", "source_image",
]
