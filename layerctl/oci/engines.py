"""`layerctl track podman:NAME` (or docker:NAME): a layerctl container over another
engine's container, so that status, diff and commit work on its real upper dir.

The engine's CLI says where the container's overlay dirs are (`inspect`:
GraphDriver.Data.UpperDir) and which image it runs; that image is brought into
the store if it is not there (`save` to a docker-archive, then load: layers
already stored are found by chain and skipped). The layerctl container is an
overlay container whose state names the engine's upper dir instead of its own
(containers/drivers/external.py), with the image's top layer as its base and the
store's checkout of that layer as its lower dir: the engine's lower layers hold
the same tree. layerctl only reads the upper dir; mount, reset and restore are
refused (the engine owns it), and `rm` forgets the tracking, nothing else.

The engine command can be replaced with LAYERCTL_PODMAN / LAYERCTL_DOCKER (for
example `podman --root DIR --runroot DIR` for a private storage).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from typing import TYPE_CHECKING

from layerctl.errors import BadInput, InvalidName, LayerctlError, NotFound
from layerctl.images import ImageName, parse_name, set_tag

if TYPE_CHECKING:
    from layerctl.store.repo import Store

ENGINES = ("podman", "docker")
_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")


def engine_command(engine: str) -> list[str]:
    """The engine's CLI as argv (LAYERCTL_PODMAN / LAYERCTL_DOCKER override it)."""
    if engine not in ENGINES:
        raise BadInput(f"unknown engine {engine!r}: use podman:NAME or docker:NAME")
    override = os.environ.get(f"LAYERCTL_{engine.upper()}")
    cmd = shlex.split(override) if override else [engine]
    if not cmd or shutil.which(cmd[0]) is None:
        raise LayerctlError(f"cannot track {engine} containers: {cmd[0] if cmd else engine} "
                            "is not installed")
    return cmd


def _run(cmd: list[str], what: str) -> bytes:
    try:
        proc = subprocess.run(cmd, capture_output=True, stdin=subprocess.DEVNULL, timeout=3600)
    except OSError as e:
        raise LayerctlError(f"{what}: cannot run {cmd[0]}: {e.strerror or e}") from None
    if proc.returncode != 0:
        lines = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise LayerctlError(f"{what}: {lines[-1] if lines else f'exit code {proc.returncode}'}")
    return proc.stdout


def _inspect(cmd: list[str], kind: str, ref: str, engine: str) -> dict:
    out = _run([*cmd, kind, "inspect", ref], f"{engine} {kind} inspect {ref}")
    try:
        data = json.loads(out)
    except ValueError:
        raise LayerctlError(f"{engine} {kind} inspect {ref}: output is not JSON") from None
    if not isinstance(data, list) or not data or not isinstance(data[0], dict):
        raise NotFound(f"no such {engine} {kind}: {ref}")
    return data[0]


def _names(values: object) -> list[ImageName]:
    out = []
    for text in values or []:
        try:
            out.append(parse_name(text))
        except InvalidName:
            continue  # e.g. "<none>:<none>"
    return out


def _stored_chain(store: Store, diff_ids: list[str]) -> str | None:
    """The stored layer at the top of a chain with these DiffIDs, if every one is stored."""
    from layerctl.oci.chains import LayerIndex

    index = LayerIndex(store)
    parent = None
    for diff_id in diff_ids:
        found = index.find(parent, diff_id)
        if found is None:
            return None
        parent = found.id
    return parent


def ensure_image(store: Store, engine: str, image: str) -> tuple[str, list[ImageName]]:
    """The layer id of the engine's image `image` in the store, loading it if missing;
    and its names (tagged in layerctl too when it is loaded)."""
    from layerctl.oci.archive.load import load

    cmd = engine_command(engine)
    info = _inspect(cmd, "image", image, engine)
    names = _names(info.get("RepoTags"))
    diff_ids = (info.get("RootFS") or {}).get("Layers") or []
    found = _stored_chain(store, diff_ids) if diff_ids else None
    if found is not None:
        return found, names
    fd, tmp = tempfile.mkstemp(prefix=".track-", suffix=".tar", dir=store.path())
    os.close(fd)
    try:
        os.unlink(tmp)  # `podman save` refuses to overwrite
        _run([*cmd, "save", "--format", "docker-archive", "-o", tmp, info.get("Id", image)]
             if engine == "podman" else [*cmd, "save", "-o", tmp, info.get("Id", image)],
             f"{engine} save {image}")
        loaded = load(store, tmp)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    top = loaded[0].top
    for name in names:
        set_tag(store, name, top)
    return top, names


def track(store: Store, spec: str, name: str | None = None) -> tuple[object, str]:
    """Track the container `spec` (podman:NAME or docker:NAME); returns the layerctl
    container and its base layer id."""
    from layerctl.containers.drivers import external
    from layerctl.containers.state import NAMES_DIR, containers_dir

    engine, sep, ref = spec.partition(":")
    if not sep or not ref or engine not in ENGINES:
        raise BadInput(f"invalid container {spec!r}: use podman:NAME or docker:NAME")
    cmd = engine_command(engine)
    info = _inspect(cmd, "container", ref, engine)
    graph = info.get("GraphDriver") or {}
    if graph.get("Name") not in ("overlay", "overlay2"):
        raise LayerctlError(f"{engine} container {ref} uses the {graph.get('Name')!r} storage "
                            "driver; only overlay containers can be tracked")
    data = graph.get("Data") or {}
    upper = data.get("UpperDir")
    if not upper or not os.path.isdir(upper):
        raise LayerctlError(f"{engine} container {ref}: its upper dir {upper!r} is not readable")
    if any(ch in upper for ch in "\n"):
        raise LayerctlError(f"{engine} container {ref}: unusable upper dir path {upper!r}")
    layer_id, names = ensure_image(store, engine, info.get("Image") or "")
    if name is None:
        wanted = (info.get("Name") or "").lstrip("/")
        taken = os.path.exists(os.path.join(containers_dir(store), NAMES_DIR, wanted))
        name = wanted if _NAME_RE.match(wanted) and not taken else None
    image = str(names[0]) if names else layer_id[:12]
    c = external.create(store, image, layer_id, name,
                        f"tracks {engine} container {info.get('Name') or ref}",
                        engine, info.get("Id", ""), (info.get("Name") or ref).lstrip("/"), data)
    return c, layer_id
