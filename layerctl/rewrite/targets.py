"""What a history edit works on and how it starts: an image tag or a container (whose
pending changes are snapshotted and replayed as a last step), the layers above its
base, and the state that `edit_history` hands to the sequencer."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from layerctl.errors import BadInput, Conflict, NotFound
from layerctl.rewrite.sequencer import begin
from layerctl.rewrite.state import Editor, Outcome, State, Step
from layerctl.store.layers import Layer

if TYPE_CHECKING:
    from layerctl.containers.state import Container
    from layerctl.store.repo import Store


@dataclass
class EditTarget:
    kind: str  # "image" | "container"
    name: str
    top: str  # image: its top layer; container: its base layer
    tag: str | None = None  # the image name when the user named an image tag
    container: Container | None = None
    snapshot: str | None = None  # the container's pending changes, as a layer


def resolve_target(store: Store, ref: str, snapshot: bool) -> EditTarget:
    from layerctl.errors import InvalidName
    from layerctl.images import parse_name, resolve

    try:
        top = resolve(store, ref)
    except (NotFound, InvalidName) as e:
        from layerctl.containers.state import find

        c = find(store, ref)
        if c is None:
            raise NotFound(f"no such image, layer or container: {ref}") from e
        from layerctl.containers.state import base

        t = EditTarget("container", c.name, base(store, c), container=c)
        if snapshot:
            t.snapshot = snapshot_container_changes(store, c)
        return t
    tag = None
    with contextlib.suppress(InvalidName):
        name = parse_name(ref)
        if store.ref(name.ref) == top:
            tag = str(name)
    return EditTarget("image", ref, top, tag)


def snapshot_container_changes(store: Store, c: Container) -> str | None:
    """The container's pending changes written as a layer on its base, the container left
    as it is (None: no changes); journalled as undo's snapshot of the container, so
    `layerctl undo` after a rebase brings them back with the refs."""
    from layerctl.containers import api
    from layerctl.containers.snapshots import snapshot
    from layerctl.containers.state import locked

    with locked(store, c):
        p = api.pending(store, c)
        if not p.changes:
            return None
        return snapshot(store, c, p, f"before history editing of {c.name}")


def target_state(store: Store, t: EditTarget, op: str, tip: str) -> State:
    target = {"kind": t.kind, "name": t.name}
    if t.container is not None:
        target.update(id=t.container.id, lower=t.container.lower or t.top)
    return {"op": op, "target": target, "orig": t.top, "tip": tip, "snapshot": t.snapshot}


def pending_steps(t: EditTarget) -> list[Step]:
    return [{"action": "pending", "layer": t.snapshot}] if t.snapshot else []


def refuse_running(store: Store, t: EditTarget) -> None:
    if t.kind == "container":
        from layerctl.runtime.process import status

        assert t.container is not None  # a container target has one
        if status(store, t.container.id)[0] == "running":
            raise Conflict(f"container {t.name} is running; stop it first")


def chain_of(store: Store, top: str) -> list[Layer]:
    from layerctl.images import chain

    return chain(store, top)


def index_of(layers: list[Layer], layer_id: str, what: str, name: str) -> int:
    for i, layer in enumerate(layers):
        if layer.id == layer_id:
            return i
    raise BadInput(f"{what} {layer_id[:12]} is not a layer of {name}")


def find_old_base(store: Store, t: EditTarget, layers: list[Layer]) -> tuple[int, str]:
    """(index of OLDBASE in `layers`, how it was found): a previous rebase's Base-Layer
    trailer (OCI's base annotation), else the nearest ancestor that tops an imported
    or pulled image (waste.default_base)."""
    from layerctl.insight.history import Target
    from layerctl.insight.waste import default_base

    ids = {layer.id: i for i, layer in enumerate(layers)}
    for layer in reversed(layers):
        base = layer.trailers.get("Base-Layer", "")
        if base in ids and ids[base] < len(layers) - (0 if t.kind == "container" else 1):
            return ids[base], f"base annotation ({layer.trailers.get('Base-Name') or base[:12]})"
    # a container's own base layer may be the base (its pending changes are the app)
    index, name = default_base(store, Target(t.name, layers,
                                             True if t.kind == "container" else None))
    if index == 0 and name == "layer 0" and len(layers) > 1:
        raise BadInput(f"cannot tell where the base of {t.name} ends: pass --base LAYER "
                       "(one of: " + ", ".join(la.id[:12] for la in layers[:-1]) + ")")
    return index, name


def interactive_target(store: Store, ref: str, base: str | None
                       ) -> tuple[EditTarget, list[Layer], int]:
    from layerctl.images import resolve

    t = resolve_target(store, ref, snapshot=False)
    layers = chain_of(store, t.top)
    if base:
        index = index_of(layers, resolve(store, base), "--base", t.name)
    else:
        index, _how = find_old_base(store, t, layers)
    return t, layers, index


def edit_history(store: Store, ref: str, start: str | None, steps: list[Step], op: str,
                 editor: Editor | None) -> Outcome:
    """Run `steps` on `ref` (an image tag or a container) from layer `start` (None: its
    top, where cherry-pick and revert add theirs)."""
    t = resolve_target(store, ref, snapshot=False)
    refuse_running(store, t)
    if t.container is not None:
        t.snapshot = snapshot_container_changes(store, t.container)
    state = target_state(store, t, op, start or t.top)
    state["todo"] = steps + pending_steps(t)
    if t.kind == "image":
        if t.tag is None:
            raise BadInput(f"{ref} is not an image tag or a container")
        state["result_tag"] = t.tag
        state["result_tag_old"] = t.top
    return begin(store, state, editor)


def image_holding(store: Store, layer_id: str) -> str:
    """The one image whose layers include `layer_id` (error if none or several)."""
    from layerctl.images import chain, list_images

    found = [str(name) for name, top in list_images(store)
             if any(la.id == layer_id for la in chain(store, top))]
    if len(found) == 1:
        return found[0]
    if not found:
        raise NotFound(f"no image holds layer {layer_id[:12]}: name the image")
    raise BadInput(f"layer {layer_id[:12]} is in {len(found)} images ({', '.join(found[:5])}): "
                   "name the image")
