"""The history-editing commands, each a todo list for the sequencer: rebase (replay or
swap), cherry-pick, revert, rebase -i (git's todo format), squash and split."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from layerctl.errors import BadInput
from layerctl.rewrite.sequencer import begin
from layerctl.rewrite.state import Editor, Outcome, Step
from layerctl.rewrite.targets import (
    chain_of,
    edit_history,
    find_old_base,
    image_holding,
    index_of,
    interactive_target,
    pending_steps,
    refuse_running,
    resolve_target,
    snapshot_container_changes,
    target_state,
)
from layerctl.store.layers import Layer, read_layer

if TYPE_CHECKING:
    from layerctl.store.repo import Store

ACTIONS = ("pick", "reword", "edit", "squash", "fixup", "drop")
_SHORT = {a[0]: a for a in ACTIONS}


# -- rebase -----------------------------------------------------------------------------


def rebase(store: Store, ref: str, onto: str, base: str | None = None, mode: str = "replay",
           in_place: bool = False, tag: str | None = None, force: bool = False) -> Outcome:
    from layerctl.images import parse_name, resolve

    if mode not in ("replay", "swap"):
        raise BadInput(f"unknown rebase mode {mode!r}: use replay or swap")
    onto_id = resolve(store, onto)
    t = resolve_target(store, ref, snapshot=False)
    if t.kind == "container" and mode == "swap":
        raise BadInput("swap mode rebases images only; a container's changes are replayed")
    layers = chain_of(store, t.top)
    if base:
        base_id = resolve(store, base)
        old_index = index_of(layers, base_id, "--base", t.name)
    else:
        old_index, _how = find_old_base(store, t, layers)
    old = layers[old_index]
    if old_index == len(layers) - 1 and t.kind == "image":
        raise BadInput(f"{t.name} has no layers above its base {old.id[:12]}: nothing to "
                       "rebase (pass --base LAYER)")
    if old.id == onto_id:
        return Outcome(t.top, f"{t.name} is already based on {onto}: nothing to do")
    new_base = read_layer(store, onto_id)
    if not force:
        for key in ("os", "architecture", "variant"):
            if old.config.get(key) != new_base.config.get(key):
                raise BadInput(f"{onto} is for {key} {new_base.config.get(key)!r}, the old base "
                               f"for {old.config.get(key)!r} (--force to rebase anyway)")
    if mode == "swap":
        _swap_preconditions(store, layers, old_index)
    refuse_running(store, t)
    if t.container is not None:
        t.snapshot = snapshot_container_changes(store, t.container)
    state = target_state(store, t, "rebase", onto_id)
    state.update(mode=mode, onto=onto_id, onto_name=onto,
                 todo=[{"action": "pick", "layer": la.id} for la in layers[old_index + 1:]]
                 + pending_steps(t))
    if t.kind == "image":
        result = tag or (t.tag if in_place else None)
        if result is None:
            if t.tag is None:
                raise BadInput(f"{t.name} is not an image tag: name the result with -t NAME:TAG")
            n = parse_name(t.tag)
            result = f"{n.repository}:{n.tag}-rebased"
        state["result_tag"] = str(parse_name(result))
        state["result_tag_old"] = store.ref(parse_name(result).ref)
    out = begin(store, state, None)
    if state.get("warnings"):
        out.message = ("warning: swap ignores " + str(len(state["warnings"])) + " conflicts:\n"
                       + "\n".join("  " + w for w in state["warnings"]) + "\n" + out.message)
    return out


def _swap_preconditions(store: Store, layers: list[Layer], old_index: int) -> None:
    """regctl's: the old base's layers are exactly the image's first layers, each with
    a DiffID (layerctl's layers are their own history entries, so the history check is
    the identity of the commits)."""
    for layer in layers[: old_index + 1]:
        if not layer.diff_id:
            raise BadInput(f"layer {layer.id[:12]} has no DiffID: swap needs one per layer")


# -- cherry-pick, revert ----------------------------------------------------------------


def _apply_layers(store: Store, onto: str, steps: list[Step], op: str) -> Outcome:
    return edit_history(store, onto, None, steps, op, None)


def cherry_pick(store: Store, layer: str, onto: str) -> Outcome:
    from layerctl.images import resolve

    layer_id = resolve(store, layer)
    if read_layer(store, layer_id).parent is None:
        raise BadInput(f"{layer} is a base layer: it has no changeset to pick")
    return _apply_layers(store, onto, [{"action": "pick", "layer": layer_id}],
                         "cherry-pick")


def revert(store: Store, layer: str, onto: str) -> Outcome:
    from layerctl.images import resolve

    return _apply_layers(store, onto, [{"action": "revert", "layer": resolve(store, layer)}],
                         "revert")


# -- interactive, squash, split ---------------------------------------------------------


def todo_text(store: Store, ref: str, base: str | None) -> tuple[str, list[Layer], int]:
    """The editable todo list (git's format) of the layers above the base."""
    t, layers, index = interactive_target(store, ref, base)
    lines = [f"pick {la.id[:12]} {_title(la)}" for la in layers[index + 1:]]
    help_text = (f"\n# Rebase of {t.name}: {len(layers) - index - 1} layers above "
                 f"{layers[index].id[:12]}.\n#\n# Commands:\n"
                 "# p, pick <layer> = use the layer\n"
                 "# r, reword <layer> = use the layer, edit its message\n"
                 "# e, edit <layer> = use the layer, stop to change it in a container\n"
                 "# s, squash <layer> = fold into the previous layer, keep both messages\n"
                 "# f, fixup <layer> = fold into the previous layer, keep its message\n"
                 "# d, drop <layer> = remove the layer (the ones above are replayed)\n"
                 "# Lines can be reordered. An empty list aborts.\n")
    return "\n".join(lines) + "\n" + help_text, layers, index


def _title(layer: Layer) -> str:
    text = layer.summary or layer.created_by
    return text.splitlines()[0] if text else ""


def parse_todo(text: str, layers: list[Layer]) -> list[Step]:
    by_prefix = layers
    steps = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        action = _SHORT.get(word, word)
        if action not in ACTIONS:
            raise BadInput(f"todo line {n}: unknown command {word!r}")
        ident = rest.split(" ", 1)[0]
        found = [la for la in by_prefix if ident and la.id.startswith(ident.lower())]
        if len(found) != 1:
            raise BadInput(f"todo line {n}: {ident!r} is not one of the listed layers")
        steps.append({"action": action, "layer": found[0].id})
    if steps and steps[0]["action"] in ("squash", "fixup"):
        raise BadInput(f"cannot {steps[0]['action']} without a previous layer")
    return steps


def interactive(store: Store, ref: str, base: str | None, editor: Editor) -> Outcome:
    text, layers, index = todo_text(store, ref, base)
    steps = parse_todo(editor(text), layers[index + 1:])
    if not steps:
        return Outcome(layers[-1].id, "nothing to do (empty todo list)")
    return edit_history(store, ref, layers[index].id, steps, "rebase -i", editor)


def squash(store: Store, ref: str, span: str | None = None, message: str | None = None
           ) -> Outcome:
    """Fold FROM..TO (the layers after FROM up to TO, as git reads a range; default:
    every layer above the image's base) into one layer; the layers above keep their
    trees."""
    from layerctl.images import resolve

    t, layers, index = interactive_target(store, ref, None)
    if span:
        first, sep, last = span.partition("..")
        if not sep:
            raise BadInput(f"invalid range {span!r}: use FROM..TO")
        lo = index_of(layers, resolve(store, first), "FROM", t.name) if first else -1
        hi = index_of(layers, resolve(store, last), "TO", t.name) if last else len(layers) - 1
    else:
        lo, hi = index, len(layers) - 1
    if hi - lo < 2:
        raise BadInput("nothing to squash: the range holds fewer than two layers")
    steps = [{"action": "pick", "layer": layers[lo + 1].id}]
    steps += [{"action": "squash", "layer": la.id} for la in layers[lo + 2:hi + 1]]
    steps += [{"action": "pick", "layer": la.id} for la in layers[hi + 1:]]
    start = layers[lo].id if lo >= 0 else None
    if start is None:
        raise BadInput("squashing the base layer itself is not supported: start after it")
    return edit_history(store, ref, start, steps, "squash", None)


def split(store: Store, layer: str, paths: list[str], ref: str | None = None) -> Outcome:
    """`layer`'s changes under `paths` into a layer of their own, the rest above it."""
    from layerctl.images import resolve
    from layerctl.store.edit import split_path

    if not paths:
        raise BadInput("name the paths to split out: split LAYER -- PATH...")
    layer_id = resolve(store, layer)
    target = ref or image_holding(store, layer_id)
    t, layers, _index_ = interactive_target(store, target, None)
    i = index_of(layers, layer_id, "layer", t.name)
    if i == 0:
        raise BadInput("cannot split a base layer")
    clean = ["/".join(p.decode() for p in split_path(os.fsencode(p))) for p in paths]
    steps = [{"action": "split", "layer": layer_id, "paths": clean}]
    steps += [{"action": "pick", "layer": la.id} for la in layers[i + 1:]]
    return edit_history(store, target, layers[i - 1].id, steps, "split", None)

