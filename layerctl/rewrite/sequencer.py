"""The sequencer every history edit runs: the todo list step by step, a stop for the
user (conflicts or `edit`), `--continue`, `--skip`, `--abort`, and the finish that
moves the tag or the container only after every step succeeded."""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, NoReturn

from layerctl import faults
from layerctl.errors import BadInput, Conflict, LayerctlError, NotFound
from layerctl.merge import MergeConflict, has_markers
from layerctl.rewrite.state import (
    REF_PREFIX,
    Editor,
    NoRebase,
    Outcome,
    RebaseStopped,
    State,
    Step,
    clear_state,
    keep,
    load_state,
    require_state,
    save_state,
)
from layerctl.rewrite.steps import (
    base_trailers,
    combine,
    parent_of,
    pick_step,
    rebased_from,
    split_step,
    write_step_layer,
)
from layerctl.store.diff import diff
from layerctl.store.fstree import DirRef, lookup
from layerctl.store.layers import read_layer
from layerctl.store.meta import FILE
from layerctl.words import path_text

if TYPE_CHECKING:
    from layerctl.store.repo import Store

# -- run, stop, finish -----------------------------------------------------------------


def _run(store: Store, state: State, editor: Editor | None) -> Outcome:
    while state["todo"]:
        step = state["todo"][0]
        action = step["action"]
        if action == "drop":
            state["todo"].pop(0)
            state["done"].append(step)
            continue
        if action == "pending":
            state["container_base"] = state["tip"]
        if action == "split":
            split_step(store, state, step)
            continue
        picked, conflicts, partial = pick_step(store, state, step)
        if conflicts:
            assert partial is not None  # a conflict stops on the partial result
            _stop(store, state, step, partial, conflicts)
        assert picked is not None  # no conflicts: the step's layer
        if action in ("squash", "fixup") and picked != state["tip"]:  # else: empty, dropped
            picked = combine(store, state, picked, step, editor)
        elif action == "reword":
            layer = read_layer(store, picked)
            message = editor(layer.message) if editor else layer.message
            if message != layer.message:
                picked = write_step_layer(store, layer.root, parent_of(store, layer),
                                          layer.config, layer, message,
                                          trailers=rebased_from(layer))
        state["tip"] = picked
        keep(store, "tip", picked)
        state["todo"].pop(0)
        state["done"].append(step)
        if action == "edit":
            _stop(store, state, step, picked, [])
        save_state(store, state)
    return _finish(store, state)


def _stop(store: Store, state: State, step: Step, layer_id: str,
          conflicts: list[MergeConflict]) -> NoReturn:
    """Save the state and a container on `layer_id` for the user; raises RebaseStopped."""
    from layerctl.containers import api

    name = f"rebase-{layer_id[:12]}"
    keep(store, "stop", layer_id)
    stop = {"action": step["action"], "layer": step["layer"], "at": layer_id,
            "container": name, "conflicts": [[os.fsdecode(c.path), c.kind, c.detail, c.markers]
                                             for c in conflicts]}
    state["stop"] = stop
    save_state(store, state)
    with contextlib.suppress(LayerctlError):
        api.remove(store, name, force=True)  # a leftover of an interrupted stop
    api.create(store, layer_id, name=name)
    faults.point("rebase.stop")
    if conflicts:
        lines = "\n".join("  " + c.line() for c in conflicts)
        raise RebaseStopped(
            f"{state['op']}: conflicts replaying layer {step['layer'][:12]}:\n{lines}\n"
            f"resolve them in container {name} (`layerctl mount {name}`), then run "
            "`layerctl rebase --continue` (or --skip, --abort)")
    raise RebaseStopped(f"{state['op']}: stopped to edit layer {step['layer'][:12]}; change "
                        f"container {name}, then run `layerctl rebase --continue`")


def _finish(store: Store, state: State) -> Outcome:
    from layerctl.images import parse_name, set_tag

    state["phase"] = "finishing"
    save_state(store, state)
    target = state["target"]
    tip = state["tip"]
    if target["kind"] == "container":
        _finish_container(store, state)
    else:
        tag = state.get("result_tag")
        if tag:
            faults.point("rebase.move-tag")
            current = store.ref(parse_name(tag).ref)
            expected = state.get("result_tag_old")
            if current not in (expected, tip):
                raise Conflict(f"tag {tag} was moved by another process meanwhile; the result "
                               f"is layer {tip[:12]} (tag it by hand), then --abort")
            set_tag(store, parse_name(tag), tip, current)
    faults.point("rebase.cleanup")
    clear_state(store)
    done = f"{state['op']} of {target['name']}: now at layer {tip[:12]}"
    if state.get("result_tag"):
        done += f", tagged {state['result_tag']}"
    for note in state.get("notes", []):
        done += f"\n  note: {note}"
    return Outcome(tip, done)


def _finish_container(store: Store, state: State) -> None:
    """The container onto the new base (state['container_base']) with the replayed
    pending changes (the tip) as its pending changes again."""
    base_id = state.get("container_base") or state["tip"]
    set_container(store, state["target"]["id"], base_id, state["tip"])


def set_container(store: Store, cid: str, base_id: str, tree_id: str) -> None:
    """Make container `cid` sit on layer `base_id` with pending changes that give layer
    `tree_id`'s tree: reset it to `base_id`, point its base at `tree_id` for a moment
    and restore every path that differs (restore writes the base's version into the
    upper dir / rootfs), then back to `base_id`. The changes end up as real files, so
    they survive a remount (a lower dir ahead of the base would not). Starts with a
    reset, so running it again after a kill gives the same result."""
    from layerctl.containers import api
    from layerctl.containers.state import resolve as find_container

    c = find_container(store, cid)
    faults.point("rebase.reset-container")
    api.reset(store, c.id, base_id)
    if tree_id == base_id:
        return
    paths = [ch.path for ch in diff(store, read_layer(store, base_id).root,
                                    read_layer(store, tree_id).root)]
    tops = [p for p in paths if not any(p.startswith(q + b"/") for q in paths if q != p)]
    faults.point("rebase.move-container")
    store.set_ref(c.ref, base_id, tree_id, f"rebase container {c.name}")
    try:
        api.restore(store, c.id, [os.fsdecode(p) for p in tops])
    finally:
        store.set_ref(c.ref, tree_id, base_id, f"rebase container {c.name}")


# -- start, continue, skip, abort -------------------------------------------------------


def begin(store: Store, state: State, editor: Editor | None) -> Outcome:
    existing = load_state(store)
    if existing is not None:
        raise Conflict("a rebase is already in progress (see `layerctl status`); "
                       "finish it with --continue or --abort")
    for ref, sha in store.refs_under(REF_PREFIX).items():  # a killed start's leftovers
        store.delete_ref(ref, sha)
    state.setdefault("done", [])
    state.setdefault("phase", "running")
    keep(store, "orig", state["orig"])
    keep(store, "tip", state["tip"])
    if state.get("snapshot"):
        keep(store, "pending", state["snapshot"])
    save_state(store, state)
    try:
        return _run(store, state, editor)
    except RebaseStopped:
        raise
    except LayerctlError:
        # refused before anything moved (a split that selects nothing, a tag moved
        # meanwhile): nothing to continue, so leave no rebase behind
        abort(store)
        raise


def continue_(store: Store, editor: Editor | None = None) -> Outcome:
    from layerctl.containers import api

    state = require_state(store)
    if state.get("phase") == "finishing":
        return _finish(store, state)
    stop = state.get("stop")
    if stop and _remade_container(store, stop):
        raise RebaseStopped(f"container {stop['container']} was recreated on the stopped "
                            "step; make your changes there, then --continue")
    if stop:
        resolved = api.commit(store, stop["container"], message="rebase resolution",
                              allow_empty=True).layer_id
        resolved_layer = read_layer(store, resolved)
        _check_resolved(store, resolved_layer.root, stop)
        at = read_layer(store, stop["at"])
        if stop["conflicts"]:
            original = read_layer(store, stop["layer"])
            tip = read_layer(store, state["tip"])
            step = state["todo"][0]
            new = write_step_layer(store, resolved_layer.root, tip, at.config, original,
                                   step.get("message"), step.get("created_by"),
                                   trailers=base_trailers(state), author=step.get("author"),
                                   when=step.get("when"))
            if step["action"] in ("squash", "fixup"):
                new = combine(store, state, new, step, editor)
            state["tip"] = new
            keep(store, "tip", new)
            state["todo"].pop(0)
            state["done"].append(step)
        elif resolved_layer.root != at.root:  # an edit stop: amend the layer
            new = write_step_layer(store, resolved_layer.root, parent_of(store, at), at.config,
                                   at, trailers=rebased_from(at))
            state["tip"] = new
            keep(store, "tip", new)
        _end_stop(store, state)
    return _run(store, state, editor)


def _remade_container(store: Store, stop: Step) -> bool:
    """Make the stop's container again if a kill left it missing or half made."""
    from layerctl.containers import api
    from layerctl.containers.state import broken, resolve

    try:
        c = resolve(store, stop["container"], broken_ok=True)
    except NotFound:
        c = None
    if c is not None and not broken(c):
        return False
    if c is not None:
        api.remove(store, c.id, force=True)
    api.create(store, stop["at"], name=stop["container"])
    return True


def _check_resolved(store: Store, root: DirRef, stop: Step) -> None:
    left = []
    for path, _kind, _detail, markers in stop["conflicts"]:
        if not markers:
            continue
        found = lookup(store, root, os.fsencode(path))
        if (found and found[0].kind == FILE and isinstance(found[1], bytes)
                and has_markers(store.read_blob(found[1]))):
            left.append(path_text(os.fsencode(path)))
    if left:
        raise Conflict(f"still has conflict markers: {', '.join(left)} (edit them in container "
                       f"{stop['container']}, or use --skip or --abort)")


def _end_stop(store: Store, state: State) -> None:
    from layerctl.containers import api

    stop = state.pop("stop")
    save_state(store, state)
    with contextlib.suppress(NotFound):
        api.remove(store, stop["container"], force=True)
    keep(store, "stop", None)


def skip(store: Store, editor: Editor | None = None) -> Outcome:
    state = require_state(store)
    if not state.get("stop") or not state["stop"]["conflicts"]:
        raise BadInput("nothing to skip: the rebase is not stopped at a conflict")
    step = state["todo"].pop(0)
    step["action"] = "drop"
    state["done"].append(step)
    _end_stop(store, state)
    return _run(store, state, editor)


def abort(store: Store) -> str:
    """Back to exactly where the operation started: tags, the container, no rebase refs."""
    from layerctl.containers import api
    from layerctl.images import parse_name, set_tag

    state = require_state(store) if load_state(store) is not None else None
    if state is None:
        if store.refs_under(REF_PREFIX):
            clear_state(store)
            return "removed an interrupted rebase's leftovers"
        raise NoRebase("no rebase in progress")
    if state.get("broken"):
        clear_state(store)
        return "removed an unreadable rebase state"
    stop = state.get("stop")
    if stop:
        with contextlib.suppress(NotFound):
            api.remove(store, stop["container"], force=True)
    target = state["target"]
    if target["kind"] == "container" and state.get("phase") == "finishing":
        set_container(store, target["id"], state["orig"], state.get("snapshot") or state["orig"])
    tag = state.get("result_tag")
    if tag and state.get("phase") == "finishing":
        name = parse_name(tag)
        old = state.get("result_tag_old")
        current = store.ref(name.ref)
        if current is not None and current == state["tip"] and current != old:  # ours
            if old is None:
                store.delete_ref(name.ref, current)
            else:
                set_tag(store, name, old, current)
    clear_state(store)
    return f"{state['op']} of {target['name']} aborted"

