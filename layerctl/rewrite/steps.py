"""One step of a history edit, applied on the current tip: pick (a three-way merge of
the layer's changes onto the tip, or its inverse for revert), split, squash/fixup into
the previous new layer, and the layer each writes (recording where it came from)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from layerctl import faults
from layerctl.errors import BadInput
from layerctl.merge import MergeConflict, MergeResult, merge_trees
from layerctl.rewrite.state import Config, Editor, State, Step, keep, save_state
from layerctl.store.diff import diff
from layerctl.store.fstree import DirRef
from layerctl.store.layers import Layer, read_layer, write_layer
from layerctl.store.meta import FILE

if TYPE_CHECKING:
    from layerctl.store.repo import Store


def merge_config(base: Config, ours: Config, theirs: Config) -> Config:
    """The config changes base→theirs applied on ours, key by key (and inside `config`)."""
    out = {k: v for k, v in ours.items() if k != "config"}
    for k in set(base) | set(theirs):
        if k != "config" and base.get(k) != theirs.get(k):
            if k in theirs:
                out[k] = theirs[k]
            else:
                out.pop(k, None)
    bc, oc, tc = (d.get("config") or {} for d in (base, ours, theirs))
    inner = dict(oc)
    for k in set(bc) | set(tc):
        if bc.get(k) != tc.get(k):
            if k in tc:
                inner[k] = tc[k]
            else:
                inner.pop(k, None)
    if inner or "config" in ours or "config" in theirs:
        out["config"] = inner
    return out


def changes_size(store: Store, parent: DirRef | None, root: DirRef) -> int:
    return sum(ch.new.size for ch in diff(store, parent, root)
               if ch.new is not None and ch.new.kind == FILE and ch.new.link is None)


def write_step_layer(store: Store, root: DirRef, parent: Layer | None, config: Config,
                     like: Layer, message: str | None = None, created_by: str | None = None,
                     trailers: dict[str, str] | None = None, author: str | None = None,
                     when: int | None = None) -> str:
    """A new layer on `parent` with `like`'s author, time, message and Created-By,
    recording where it came from (Rebased-From)."""
    from layerctl.changeset.write import write_changeset

    parent_root = parent.root if parent else None
    extra = dict(trailers or {})
    extra.setdefault("Rebased-From", like.id)
    diff_id = write_changeset(store, parent_root, root)[0]
    source = extra.pop("Source-DiffID", "")
    all_trailers = {"DiffID": diff_id, "Size": str(changes_size(store, parent_root, root)),
                    "Created-By": like.created_by if created_by is None else created_by,
                    "Source-DiffID": source if source and source != diff_id else ""}
    all_trailers.update(extra)
    new_id = write_layer(store, root, config, parent.id if parent else None,
                         author or like.author, like.message if message is None else message,
                         all_trailers, when=like.author_time if when is None else when)
    faults.point("rebase.write-layer")
    return new_id


def _merge(store: Store, base: Layer | None, ours: Layer, theirs: Layer,
           labels: tuple[str, str], force: bool = False,
           select: Callable[[bytes], bool] | None = None) -> MergeResult:
    with store.pack_writer() as writer:
        result = merge_trees(store, writer, base.root if base else None, ours.root, theirs.root,
                             labels, force_theirs=force, select=select)
        writer.finish()
    store.landed()
    return result


def pick_step(store: Store, state: State, step: Step
              ) -> tuple[str | None, list[MergeConflict], str | None]:
    """Run one step on the tip: (new tip, conflicts, partial root's layer for a stop)."""
    tip = read_layer(store, state["tip"])
    layer = read_layer(store, step["layer"])
    action = step["action"]
    if action == "revert":
        base, theirs = layer, (read_layer(store, layer.parent) if layer.parent else None)
        if theirs is None:
            raise BadInput(f"cannot revert {layer.id[:12]}: it is a base layer")
        result = _merge(store, base, tip, theirs, ("current", f"revert {layer.id[:12]}"))
        config = merge_config(layer.config, tip.config, theirs.config)
        message = (f'Revert "{layer.summary or layer.created_by}"\n\n'
                   f"This reverts layer {layer.id}.")
        import time

        from layerctl.identity import default_author

        step.update(message=message, created_by=f"layerctl revert {layer.id[:12]}",
                    author=default_author(), when=int(time.time()))
        if result.conflicts:
            return None, result.conflicts, _partial(store, result.root, tip, config, layer)
        new = write_step_layer(store, result.root, tip, config, layer, step["message"],
                               step["created_by"], author=step["author"], when=step["when"])
        return new, [], None
    parent = read_layer(store, layer.parent) if layer.parent else None
    if parent is not None and parent.id == tip.id and action in ("pick", "edit", "pending"):
        return layer.id, [], None  # nothing below it changed: the layer as it is
    swap = state.get("mode") == "swap"
    extra = base_trailers(state)
    if parent is not None and parent.root == tip.root:
        root, conflicts = layer.root, []
    else:
        label = "pending changes" if action == "pending" else f"layer {layer.id[:12]}"
        result = _merge(store, parent, tip, layer, ("new base", label), force=swap,
                        select=_selector(step.get("paths")))
        root, conflicts = result.root, result.conflicts
        if swap:
            state.setdefault("warnings", []).extend(
                f"layer {layer.id[:12]}: {c.line()}" for c in conflicts)
            conflicts = []
    if swap:
        base_cfg = read_layer(store, state["onto"]).config
        config = dict(layer.config)
        for key in ("architecture", "os", "os.version"):
            if key in base_cfg:
                config[key] = base_cfg[key]
            else:
                config.pop(key, None)
        extra["Source-DiffID"] = layer.source_diff_id or layer.diff_id
    else:
        config = merge_config(parent.config if parent else {}, tip.config, layer.config)
    if conflicts:
        return None, conflicts, _partial(store, root, tip, config, layer)
    if root == tip.root and config == tip.config and action != "pending" and not swap:
        state.setdefault("notes", []).append(
            f"layer {layer.id[:12]} is empty after the rebase; dropped")
        return tip.id, [], None
    new = write_step_layer(store, root, tip, config, layer, trailers=extra)
    return new, [], None


def _selector(paths: list[str] | None) -> Callable[[bytes], bool] | None:
    if not paths:
        return None
    chosen = [os.fsencode(p) for p in paths]

    def select(path: bytes) -> bool:
        return any(path == c or path.startswith(c + b"/") or c.startswith(path + b"/")
                   for c in chosen)

    return select


def base_trailers(state: State) -> dict[str, str]:
    """OCI's base annotations, as trailers (save/push can turn them into annotations)."""
    if state["op"] != "rebase":
        return {}
    return {"Base-Name": state.get("onto_name", ""), "Base-Layer": state["onto"]}


def _partial(store: Store, root: DirRef, tip: Layer, config: Config, layer: Layer) -> str:
    return write_layer(store, root, config, tip.id, layer.author,
                       f"rebase: conflicts replaying {layer.id[:12]}\n\n{layer.message}",
                       {"Created-By": layer.created_by, "Rebased-From": layer.id},
                       when=layer.author_time)


def combine(store: Store, state: State, picked: str, step: Step, editor: Editor | None) -> str:
    """squash/fixup: fold the step's result into the previous new layer."""
    prev = read_layer(store, state["tip"])
    new = read_layer(store, picked)
    if prev.parent is None:
        raise BadInput("squash/fixup needs a layer before it")
    below = read_layer(store, prev.parent)
    message = prev.message
    created_by = prev.created_by
    if step["action"] == "squash":
        message = "\n\n".join(m for m in (prev.message, new.message) if m)
        created_by = " && ".join(c for c in (prev.created_by, new.created_by) if c)
        if editor is not None and step.get("edit_message"):
            message = editor(message)
    trailers = {"Rebased-From": prev.trailers.get("Rebased-From", prev.id)}
    return write_step_layer(store, new.root, below, new.config, prev, message, created_by,
                            trailers)


def split_step(store: Store, state: State, step: Step) -> None:
    """The layer's changes under the step's paths as a layer of their own on its parent,
    the layer itself (same tree) above it."""
    layer = read_layer(store, step["layer"])
    parent = read_layer(store, state["tip"])
    result = _merge(store, parent, parent, layer, ("parent", "layer"),
                    select=_selector(step["paths"]))
    if result.root == parent.root:
        raise BadInput(f"layer {layer.id[:12]} changes nothing under {', '.join(step['paths'])}")
    if result.root == layer.root:
        raise BadInput(f"layer {layer.id[:12]} changes nothing outside {', '.join(step['paths'])}")
    shown = ", ".join("/" + p for p in step["paths"])
    first = write_step_layer(store, result.root, parent, layer.config, layer,
                             f"{layer.message or layer.created_by} ({shown})".strip())
    second = write_step_layer(store, layer.root, read_layer(store, first), layer.config, layer)
    state["tip"] = second
    keep(store, "tip", second)
    state["todo"].pop(0)
    state["done"].append(step)
    save_state(store, state)


def rebased_from(layer: Layer) -> dict[str, str]:
    return {"Rebased-From": layer.trailers.get("Rebased-From", layer.id)}


def parent_of(store: Store, layer: Layer) -> Layer | None:
    return read_layer(store, layer.parent) if layer.parent else None

