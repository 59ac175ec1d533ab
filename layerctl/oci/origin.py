"""Where a layer or image came from, so that it leaves as it came.

- The image's own config bytes (a top layer's source/config.json): its sha256 is
  the image ID other tools know, so `save` and `push` send those bytes back
  whenever they still describe the image (same DiffIDs, same config).
- Per layer, the compressed blobs registries served for it (registry, repository,
  digest, size, media type: cache/origins/<layer id>.json) and, per image, the
  manifests they served. `push` references a blob the destination has (a HEAD,
  or a cross-repository mount on the same registry) instead of compressing the
  layer again, and sends the original manifest when every descriptor matches,
  so `pull X; push X` gives X's manifest digest. These are a cache: losing them
  costs only identity of the compressed form, never correctness (the digests
  are the registry's to check).
"""

from __future__ import annotations

import json
import os
import tempfile

from layerctl.images import SOURCE_CONFIG, chain, own_config
from layerctl.oci.model import config_blob
from layerctl.store.layers import Layer, read_layer, read_source, write_layer

MAX_REMEMBERED = 16  # blobs or manifests per layer: the newest win


def image_config(store: object, layers: list[Layer], diff_ids: list[str]) -> bytes:
    """The config to send for the image `layers` whose tars have `diff_ids`: the
    image's own bytes as loaded or pulled when they still describe it, else
    layerctl's canonical config."""
    raw = own_config(store, layers, diff_ids)
    return raw if raw is not None else config_blob(layers, diff_ids)


def keep_config(store: object, top: Layer, config: dict, raw: bytes) -> Layer:
    """`top` if it carries `config` and gives back `raw` as its image config, else a
    sibling commit of the same tree that does (what loads and pulls tag)."""
    kept = read_source(store, top, SOURCE_CONFIG)
    if top.config == config:
        if kept == raw:
            return top
        if kept is None:
            layers = chain(store, top.id)
            diff_ids = json.loads(raw)["rootfs"]["diff_ids"]
            if config_blob(layers, diff_ids) == raw:
                return top  # layerctl's own config: nothing to keep
    source = {name: read_source(store, top, name) for name in (b"tar-split",)}
    source[SOURCE_CONFIG] = raw
    layer_id = write_layer(
        store, top.root, config, top.parent, top.author, top.message, top.trailers,
        when=top.author_time, source=source,
    )  # fmt: skip
    return read_layer(store, layer_id)


# -- registry blobs and manifests -------------------------------------------------------


def _path(store: object, layer_id: str) -> str:
    return store.path("cache", "origins", layer_id + ".json")


def _read(store: object, layer_id: str) -> dict:
    try:
        with open(_path(store, layer_id), encoding="utf-8") as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write(store: object, layer_id: str, data: dict) -> None:
    path = _path(store, layer_id)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".origin-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _remember(store: object, layer_id: str, key: str, entry: dict) -> None:
    try:
        data = _read(store, layer_id)
        entries = [e for e in data.get(key, []) if isinstance(e, dict) and e != entry]
        data[key] = [entry, *entries][:MAX_REMEMBERED]
        _write(store, layer_id, data)
    except OSError:
        pass  # a cache: a read-only store still pulls


def remember_blob(store: object, layer_id: str, registry: str, repository: str,
                  digest: str, size: int, media_type: str, diff_id: str) -> None:
    """A registry served `layer_id` as this blob (its tar's DiffID `diff_id`)."""
    _remember(store, layer_id, "blobs", {
        "registry": registry, "repository": repository, "digest": digest, "size": size,
        "media_type": media_type, "diff_id": diff_id,
    })


def blob_origins(store: object, layer_id: str) -> list[dict]:
    """The blobs registries served for `layer_id`, newest first."""
    out = []
    for e in _read(store, layer_id).get("blobs", []):
        try:
            out.append({"registry": str(e["registry"]), "repository": str(e["repository"]),
                        "digest": str(e["digest"]), "size": int(e["size"]),
                        "media_type": str(e["media_type"]), "diff_id": str(e["diff_id"])})
        except (KeyError, TypeError, ValueError):
            continue
    return out


def remember_manifest(store: object, top_id: str, registry: str, repository: str,
                      media_type: str, raw: bytes) -> None:
    """A registry served the image whose top layer is `top_id` with this manifest."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return  # not JSON text: nothing to send back verbatim
    _remember(store, top_id, "manifests", {
        "registry": registry, "repository": repository, "media_type": media_type,
        "raw": text,
    })


def manifest_origins(store: object, top_id: str) -> list[tuple[str, bytes]]:
    """(media type, raw bytes) of the manifests registries served for an image."""
    out = []
    for e in _read(store, top_id).get("manifests", []):
        try:
            out.append((str(e["media_type"]), str(e["raw"]).encode("utf-8")))
        except (KeyError, TypeError, UnicodeEncodeError):
            continue
    return out
