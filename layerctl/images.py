"""Images: names (the distribution reference grammar), refs, layer resolution,
OCI config, history and identity."""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from layerctl import faults
from layerctl.errors import Ambiguous, InvalidName, LayerctlError, NotFound, TagNotMoved
from layerctl.record import Frozen
from layerctl.store.layers import Layer, read_layer, read_source

SOURCE_CONFIG = b"config.json"  # in a layer's source/: the image's own config bytes
# What a layer's config.json keeps of an image config; the rest is derived on save.
LAYER_CONFIG_KEYS = ("architecture", "os", "os.version", "os.features", "variant", "config")

if TYPE_CHECKING:
    from layerctl.store.fstree import DirRef
    from layerctl.store.repo import Store

REF_PREFIX = "refs/images/"
TAG_DIR = "_tags"  # no path component of the grammar can start with '_'
DEFAULT_TAG = "latest"

_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"  # ASCII, as the distribution grammar
_DIGEST = r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(
    rf"^(?P<name>(?:(?P<domain>{_DOMAIN})/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?\Z"
)


class ImageName(Frozen):
    __slots__ = ("repository", "tag")

    def __init__(self, repository: str, tag: str = DEFAULT_TAG):
        self.repository = repository
        self.tag = tag

    def __str__(self) -> str:
        return f"{self.repository}:{self.tag}"

    @property
    def ref(self) -> str:
        repo = "/".join(_ref_component(c) for c in self.repository.split("/"))
        return f"{REF_PREFIX}{repo}/{TAG_DIR}/{_ref_component(self.tag)}"


# Git refuses some names the reference grammar allows: ':' '[' ']' in a registry
# host, and a component with '..', ending in '.' or '.lock' (tags `1..2`, `v1.`,
# `x.lock`). Those characters are percent-encoded; the grammar has no '%', so
# decoding is exact and refs written before this encoding decode the same.
_ENCODE = {"%": "%25", ":": "%3A", "[": "%5B", "]": "%5D", ".": "%2E"}
_DECODE = re.compile(r"%(25|3A|5B|5D|2E)")
_DOTS = re.compile(r"\.(?=\.)|(?<=\.)\.|^\.|\.$|\.(?=lock$)")


def _ref_component(text: str) -> str:
    text = re.sub(r"[%:\[\]]", lambda m: _ENCODE[m.group()], text)
    return _DOTS.sub("%2E", text)


def _ref_decode(text: str) -> str:
    return _DECODE.sub(lambda m: chr(int(m.group(1), 16)), text)


def parse_name(text: str) -> ImageName:
    """'name[:tag]' per the distribution reference grammar; tag defaults to latest."""
    if not text.isascii():
        raise InvalidName(f"invalid image name {text!r}: names and tags are ASCII only")
    m = _REFERENCE.match(text)
    if not m or m["digest"]:
        raise InvalidName(
            f"invalid image name {text!r}: expected [registry[:port]/]name[:tag] "
            "with a lowercase name"
        )
    name = m["name"]
    domain = m["domain"]
    if domain and not (
        "." in domain or ":" in domain or domain == "localhost" or domain.lower() != domain
    ):
        domain = None  # a first component like 'library' is part of the path
    if len(name) > 255:
        raise InvalidName(f"invalid image name {text!r}: longer than 255 characters")
    if name != name.lower() and not domain:
        raise InvalidName(f"invalid image name {text!r}: repository names must be lowercase")
    return ImageName(name, m["tag"] or DEFAULT_TAG)


def name_from_ref(ref: str) -> ImageName:
    body = ref[len(REF_PREFIX) :]
    repo, _, tag = body.rpartition(f"/{TAG_DIR}/")
    return ImageName(_ref_decode(repo), _ref_decode(tag))


def ref_problem(ref: str) -> str | None:
    """Why `ref` is not the ref of an image tag (None: it is). A ref is taken only
    when its name decodes to an image name that encodes back to the same ref."""
    if not ref.startswith(REF_PREFIX) or f"/{TAG_DIR}/" not in ref:
        return f"not an image tag ref ({REF_PREFIX}<name>/{TAG_DIR}/<tag>)"
    if not ref.isascii():
        return "not an image name (non-ASCII)"
    image = name_from_ref(ref)
    try:
        parsed = parse_name(str(image))
    except InvalidName:
        return "not an image name"
    if parsed != image or parsed.ref != ref:
        return "not an image name in canonical form"
    return None


def list_images(
    store: Store, broken: list[tuple[str, str]] | None = None
) -> list[tuple[ImageName, str]]:
    """(name, top layer id) for every tag, sorted by name. Refs that are not image
    names are left out, and appended to `broken` as (ref, reason)."""
    out = []
    for ref, sha in store.refs_under(REF_PREFIX).items():
        problem = ref_problem(ref)
        if problem is None:
            out.append((name_from_ref(ref), sha))
        elif broken is not None:
            broken.append((ref, problem))
    return sorted(out, key=lambda x: str(x[0]))


def image_layer(store: Store, name: ImageName) -> str | None:
    return store.ref(name.ref)


def set_tag(store: Store, name: ImageName, layer_id: str, expected: str | None = "any") -> None:
    """Point `name` at `layer_id`; with `expected`, only if the tag still has that value.

    Without `expected` the last writer wins, as in Docker: a tag moved by another
    process between our read and our compare-and-swap is read again, and a lock
    another live process holds (for milliseconds) is waited for, up to a second.
    """
    from layerctl.store.repo import RefBusy, RefChanged

    with _tag_errors(name):
        if expected != "any":
            store.set_ref(name.ref, expected, layer_id, f"tag {name}")
            return
        deadline = time.monotonic() + 1.0
        while True:
            current = store.ref(name.ref)
            faults.point("tag.move")
            try:
                store.set_ref(name.ref, current, layer_id, f"tag {name}")
                return
            except RefChanged:
                if time.monotonic() > deadline:
                    raise
            except RefBusy:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)


@contextlib.contextmanager
def _tag_errors(name: ImageName) -> Iterator[None]:
    """Ref errors in the user's words: the tag, not its ref path."""
    from layerctl.store.repo import RefBusy, RefChanged

    try:
        yield
    except RefBusy as e:
        raise RefBusy(f"tag {name} is locked by {e.holder}; try again", e.holder) from None
    except RefChanged:
        raise RefChanged(f"tag {name} was moved by another process meanwhile") from None


def tag_new_layer(store: Store, name: ImageName, layer_id: str, what: str,
                  expected: str | None = "any") -> None:
    """Tag a layer an operation just wrote; if the tag cannot move, the error says
    that the layer exists all the same (`what`: "committed", "imported")."""
    try:
        set_tag(store, name, layer_id, expected)
    except LayerctlError as e:
        raise TagNotMoved(f"{what} layer {layer_id[:12]}, but {e}; tag it with "
                          f"`layerctl tag {layer_id[:12]} {name}`") from None


def remove_tag(store: Store, name: ImageName) -> str:
    current = store.ref(name.ref)
    if current is None:
        raise NotFound(f"no such image: {name}")
    with _tag_errors(name):
        store.delete_ref(name.ref, current, f"rmi {name}")
    return current


# -- layer references ---------------------------------------------------------

_ANCESTRY = re.compile(r"(\^\d*|~\d*)")
_SUFFIX = re.compile(r"(?:\^\d*|~\d*)*")
_HEX = re.compile(r"^[0-9a-f]{4,40}\Z")


def resolve(store: Store, text: str) -> str:
    """A layer reference -> layer id: name[:tag], a (short) layer id, with ~N / ^ suffixes."""
    cut = min((i for i in (text.find("~"), text.find("^")) if i >= 0), default=len(text))
    base, suffix = text[:cut], text[cut:]
    if not base or not _SUFFIX.fullmatch(suffix):
        raise InvalidName(f"invalid layer reference {text!r}")
    layer_id = _resolve_base(store, base)
    for m in _ANCESTRY.finditer(suffix):
        op, num = m.group()[0], m.group()[1:]
        n = int(num) if num else 1
        if op == "^":
            if n == 0:
                continue
            if n > 1:
                raise NotFound(f"{text}: layers have one parent, there is no ^{n}")
            steps = 1
        else:
            steps = n
        for _ in range(steps):
            parent = read_layer(store, layer_id).parent
            if parent is None:
                raise NotFound(f"{text}: layer {layer_id[:12]} has no parent")
            layer_id = parent
    return layer_id


_REFLOG_AT = re.compile(r"^(?P<name>.+)@\{(?P<n>\d+)\}\Z")


def reflog_ref(store: object, text: str) -> str:
    """The ref an `IMAGE` or `CONTAINER` names, for its reflog (`NAME@{n}`): an
    image tag that exists or existed, else a container, else the tag."""
    import os

    from layerctl.containers.state import find

    try:
        ref = parse_name(text).ref
    except InvalidName:
        ref = None
    if ref and (store.ref(ref) or os.path.exists(os.path.join(store.root, "logs", ref))):
        return ref
    c = find(store, text)
    if c is not None:
        return c.ref
    if ref is None:
        raise NotFound(f"no such image or container: {text}")
    return ref


def _resolve_reflog(store: object, name: str, n: int) -> str:
    """`name@{n}`: the value the ref had n moves ago, as in git (@{0} is now)."""
    from layerctl.store.journal import read_reflog

    log = read_reflog(store.root, reflog_ref(store, name))
    if n >= len(log):
        raise NotFound(f"{name}@{{{n}}}: its reflog has only {len(log)} entries")
    value = log[len(log) - 1 - n].new
    if value is None:
        raise NotFound(f"{name}@{{{n}}}: the image was deleted at that point")
    return value


def _resolve_base(store: object, base: str) -> str:
    at = _REFLOG_AT.match(base)
    if at:
        return _resolve_reflog(store, at["name"], int(at["n"]))
    name = None
    try:
        name = parse_name(base)
    except InvalidName:
        pass
    if name is not None:
        found = image_layer(store, name)
        if found:
            return found
    lowered = base.lower()
    if _HEX.match(lowered):
        matches = store.ids_with_prefix(lowered)
        layers = [m for m in matches if _is_layer(store, m)]
        if len(layers) == 1:
            return layers[0]
        if len(layers) > 1:
            raise Ambiguous(f"layer id {base} is ambiguous: matches {len(layers)} layers")
    if name is None and not _HEX.match(lowered):
        raise InvalidName(f"invalid layer reference {base!r}")
    raise NotFound(f"no such image or layer: {base}")


def _is_layer(store: Store, sha: str) -> bool:
    try:
        read_layer(store, sha)
    except NotFound:
        return False
    return True


def chain(store: Store, layer_id: str) -> list[Layer]:
    """The layers from the base up to `layer_id`."""
    out = []
    current: str | None = layer_id
    while current:
        layer = read_layer(store, current)
        out.append(layer)
        current = layer.parent
    return out[::-1]


# -- sizes, as Docker defines them ------------------------------------------------


def layer_sizes(store: Store, layers: list[Layer]) -> list[int]:
    """Docker's layer size (`history` SIZE) of each layer: bytes of regular-file
    content its changeset adds or changes, each hardlink group once. Derived from the
    trees, not the Size trailer (whose meaning older layerctl commits did not keep
    to), and cached by layer id since a layer never changes (the cache file is
    written once, when anything was new)."""
    cache = _size_cache(store)
    missing = [layer for layer in layers if layer.id not in cache]
    if missing:
        from layerctl.store.diff import diff
        from layerctl.store.meta import FILE

        for layer in missing:
            if not layer.parent:  # the whole tree: its records say it all
                cache[layer.id] = tree_bytes(store, layer.root)
                continue
            parent = read_layer(store, layer.parent).root
            cache[layer.id] = sum(
                ch.new.size for ch in diff(store, parent, layer.root)
                if ch.new is not None and ch.new.kind == FILE and ch.new.link is None)
        _save_size_cache(store, cache)
    return [cache[layer.id] for layer in layers]


# a regular file's record line that is not a hardlink to an earlier member: its size
_SIZED_FILE = re.compile(
    rb"^[^ \n]+ - [^ \n]+ [^ \n]+ [^ \n]+ size=(\d+)(?![^\n]* link=)[^\n]*$", re.M)


def tree_bytes(store: Store, root: DirRef) -> int:
    """Content bytes the changeset of a whole tree ships (regular files, hardlink groups
    once), read from the metadata records alone: a sixth of the time of a full diff."""
    from layerctl.store.fstree import RECORD, read_record

    records = []
    todo = [root.meta]
    while todo:
        for name, _mode, sha in store.read_tree(todo.pop()):
            if name == RECORD:
                records.append(read_record(store, sha))
            else:
                todo.append(sha)
    return sum(map(int, _SIZED_FILE.findall(b"\n".join(records))))  # one pass, in C


def layer_size(store: Store, layer: Layer) -> int:
    return layer_sizes(store, [layer])[0]


def image_size(store: Store, layers: list[Layer]) -> int:
    """Docker's image size (`images` SIZE, `inspect` Size): the sum of its layers' sizes."""
    return sum(layer_sizes(store, layers))


_SIZE_CACHE = ("cache", "layer-sizes.json")


def _size_cache(store: Store) -> dict[str, int]:
    cache = getattr(store, "_layer_sizes", None)
    if cache is None:
        try:
            with open(store.path(*_SIZE_CACHE), encoding="utf-8") as f:
                cache = {str(k): int(v) for k, v in json.load(f).items()}
        except (OSError, ValueError, AttributeError):
            cache = {}  # a cache only: rebuilt from the trees
        store._layer_sizes = cache
    return cache


def _save_size_cache(store: Store, cache: dict[str, int]) -> None:
    import os

    from layerctl.atomic import write_file

    path = store.path(*_SIZE_CACHE)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_file(path, json.dumps(cache).encode(), durable=False)
    except OSError:
        pass  # a cache only


# -- OCI config and identity ----------------------------------------------------


def host_arch() -> str:
    machine = os.uname().machine.lower()  # platform.machine(), without importing platform
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(
        machine, machine
    )


def default_config() -> dict:
    return {"architecture": host_arch(), "os": "linux", "config": {}}


def oci_config(layers: list[Layer]) -> dict:
    """The OCI image config of the image whose layers are `layers` (base first)."""
    top = layers[-1]
    config = {k: v for k, v in top.config.items() if k not in ("rootfs", "history")}
    config.setdefault("architecture", host_arch())
    config.setdefault("os", "linux")
    config.setdefault("config", {})
    config["created"] = top.created_iso
    if top.author_name:
        config["author"] = top.author_name
    config["rootfs"] = {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]}
    history = []
    for layer in layers:
        entry = {"created": layer.created_iso}
        if layer.created_by:
            entry["created_by"] = layer.created_by
        if layer.author_name:
            entry["author"] = layer.author_name
        if layer.message:
            entry["comment"] = layer.message
        history.append(entry)
    config["history"] = history
    return config


def canonical_json(data: dict) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def layer_config(config: dict) -> dict:
    """The part of an image config that a layer's config.json holds."""
    out = {k: config[k] for k in LAYER_CONFIG_KEYS if k in config and config[k] is not None}
    out.setdefault("config", {})
    return out


def own_config(store: object, layers: list[Layer], diff_ids: list[str]) -> bytes | None:
    """The image's own config bytes as it was loaded or pulled (the top layer's
    source/config.json), if they still describe it: these DiffIDs, this config."""
    raw = read_source(store, layers[-1], SOURCE_CONFIG) if layers[-1].source else None
    if raw is None:
        return None
    try:
        parsed = json.loads(raw)
        same = (parsed["rootfs"]["diff_ids"] == list(diff_ids)
                and layer_config(parsed) == layers[-1].config)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return raw if same else None


def image_id(layers: list[Layer], store: object = None) -> str:
    """sha256 of the image's config, as Docker and OCI define the image ID: with `store`,
    of the image's own config bytes when it was loaded or pulled and still holds
    (what save and push send), else of layerctl's canonical OCI config."""
    import hashlib  # OpenSSL: ~2 ms of start-up that only the id needs

    if store is not None:
        raw = own_config(store, layers, [x.sent_diff_id for x in layers])
        if raw is not None:
            return "sha256:" + hashlib.sha256(raw).hexdigest()
    return "sha256:" + hashlib.sha256(canonical_json(oci_config(layers))).hexdigest()
