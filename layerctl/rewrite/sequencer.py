"""History editing: rebase, rebase -i, cherry-pick, revert, squash and split, all run
by one sequencer over a todo list of steps, each step a three-way merge (merge.py).

State lives in the store while an operation is under way: `refs/rebase/*` keep every
layer it wrote (and the container snapshot) reachable, `ROOT/rebase/state.json` (written
by rename) holds the todo list. Tags and containers move only in `_finish`, after every
step succeeded, so a kill -9 leaves the old state (plus that progress, which `--abort`
drops) or the new one. A conflict stops with a *conflict layer* (the partial result,
conflicted text files with markers) and a container on it where the user resolves;
`--continue` commits that container's changes as the step's result.

Over 500 lines: the sequencer (state, steps, stop/continue/abort) and the commands
that build its todo lists (rebase, cherry-pick, revert, -i, squash, split) share the
state helpers; splitting them is the same work as giving the state a class.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass

from layerctl import faults
from layerctl.errors import BadInput, Conflict, LayerctlError, NotFound
from layerctl.merge import MergeConflict, has_markers, merge_trees
from layerctl.store.diff import diff
from layerctl.store.fstree import DirRef, lookup
from layerctl.store.layers import Layer, read_layer, write_layer
from layerctl.store.meta import FILE
from layerctl.words import path_text

STATE_DIR = "rebase"
REF_PREFIX = "refs/rebase/"
ACTIONS = ("pick", "reword", "edit", "squash", "fixup", "drop")
_SHORT = {a[0]: a for a in ACTIONS}
Editor = Callable[[str], str]


class RebaseStopped(LayerctlError):
    """A step needs the user: conflicts to resolve, or an `edit` stop (exit code 1)."""


class NoRebase(LayerctlError):
    """--continue/--abort/--skip without an operation in progress."""


@dataclass
class Outcome:
    tip: str
    message: str


# -- state ------------------------------------------------------------------------------


def _state_path(store: object) -> str:
    return store.path(STATE_DIR, "state.json")


def load_state(store: object) -> dict | None:
    import json

    try:
        with open(_state_path(store), encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except ValueError:
        return {"broken": True}


def _save(store: object, state: dict) -> None:
    from layerctl.containers.state import write_json_atomic

    os.makedirs(store.path(STATE_DIR), mode=0o700, exist_ok=True)
    faults.point("rebase.save-state")
    write_json_atomic(_state_path(store), state)


def _keep(store: object, name: str, sha: str | None) -> None:
    """Point refs/rebase/NAME at `sha` (None: remove it): what keeps the layers an
    unfinished operation wrote reachable for fsck and prune."""
    ref = REF_PREFIX + name
    old = store.ref(ref)
    if old == sha:
        return
    if sha is None:
        store.delete_ref(ref, old)
    else:
        store.set_ref(ref, old, sha, f"rebase {name}")


def _clear(store: object) -> None:
    for ref, sha in store.refs_under(REF_PREFIX).items():
        store.delete_ref(ref, sha)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_state_path(store))


def progress_line(store: object) -> str:
    """One line for `status` while an operation is under way ('' otherwise)."""
    if not os.path.exists(_state_path(store)):
        return ""
    state = load_state(store) or {}
    if state.get("broken"):
        return "rebase: state unreadable; run `layerctl rebase --abort`"
    what = f"{state['op']} of {state['target']['name']}"
    done, total = len(state["done"]), len(state["done"]) + len(state["todo"])
    stop = state.get("stop")
    if stop:
        at = done + 1 if stop.get("conflicts") else done  # an edit stop's step is done
        where = f"stopped at {stop['action']} {stop['layer'][:12]} ({at}/{total})"
        if stop.get("conflicts"):
            where += (f", {len(stop['conflicts'])} conflicts, resolve in container "
                      f"{stop['container']}")
        else:
            where += f", amend in container {stop['container']}"
        return (f"{what} in progress: {where}; then `layerctl rebase --continue` "
                "(or --skip, --abort)")
    return f"{what} in progress ({done}/{total}); `layerctl rebase --continue` or --abort"


# -- layers -----------------------------------------------------------------------------


def merge_config(base: dict, ours: dict, theirs: dict) -> dict:
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


def changes_size(store: object, parent: DirRef | None, root: DirRef) -> int:
    return sum(ch.new.size for ch in diff(store, parent, root)
               if ch.new is not None and ch.new.kind == FILE and ch.new.link is None)


def write_step_layer(store: object, root: DirRef, parent: Layer | None, config: dict,
                     like: Layer, message: str | None = None, created_by: str | None = None,
                     trailers: dict | None = None, author: str | None = None,
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


def _merge(store: object, base: Layer | None, ours: Layer, theirs: Layer, labels: tuple[str, str],
           force: bool = False, select: Callable[[bytes], bool] | None = None):  # noqa: ANN202
    with store.pack_writer() as writer:
        result = merge_trees(store, writer, base.root if base else None, ours.root, theirs.root,
                             labels, force_theirs=force, select=select)
        writer.finish()
    store.landed()
    return result


# -- the sequencer ----------------------------------------------------------------------


def _step_pick(store: object, state: dict, step: dict) -> tuple[str | None, list[MergeConflict],
                                                                 str | None]:
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
    extra = _base_trailers(state)
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


def _base_trailers(state: dict) -> dict:
    """OCI's base annotations, as trailers (save/push can turn them into annotations)."""
    if state["op"] != "rebase":
        return {}
    return {"Base-Name": state.get("onto_name", ""), "Base-Layer": state["onto"]}


def _partial(store: object, root: DirRef, tip: Layer, config: dict, layer: Layer) -> str:
    return write_layer(store, root, config, tip.id, layer.author,
                       f"rebase: conflicts replaying {layer.id[:12]}\n\n{layer.message}",
                       {"Created-By": layer.created_by, "Rebased-From": layer.id},
                       when=layer.author_time)


def _combine(store: object, state: dict, picked: str, step: dict, editor: Editor | None) -> str:
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


def _run(store: object, state: dict, editor: Editor | None) -> Outcome:
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
            _split_step(store, state, step)
            continue
        picked, conflicts, partial = _step_pick(store, state, step)
        if conflicts:
            _stop(store, state, step, partial, conflicts)
        if action in ("squash", "fixup") and picked != state["tip"]:  # else: empty, dropped
            picked = _combine(store, state, picked, step, editor)
        elif action == "reword":
            layer = read_layer(store, picked)
            message = editor(layer.message) if editor else layer.message
            if message != layer.message:
                picked = write_step_layer(store, layer.root, _parent(store, layer), layer.config,
                                          layer, message, trailers=_rebased(layer))
        state["tip"] = picked
        _keep(store, "tip", picked)
        state["todo"].pop(0)
        state["done"].append(step)
        if action == "edit":
            _stop(store, state, step, picked, [])
        _save(store, state)
    return _finish(store, state)


def _split_step(store: object, state: dict, step: dict) -> None:
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
    _keep(store, "tip", second)
    state["todo"].pop(0)
    state["done"].append(step)
    _save(store, state)


def _rebased(layer: Layer) -> dict:
    return {"Rebased-From": layer.trailers.get("Rebased-From", layer.id)}


def _parent(store: object, layer: Layer) -> Layer | None:
    return read_layer(store, layer.parent) if layer.parent else None


def _stop(store: object, state: dict, step: dict, layer_id: str, conflicts: list) -> None:
    """Save the state and a container on `layer_id` for the user; raises RebaseStopped."""
    from layerctl.containers import api

    name = f"rebase-{layer_id[:12]}"
    _keep(store, "stop", layer_id)
    stop = {"action": step["action"], "layer": step["layer"], "at": layer_id,
            "container": name, "conflicts": [[os.fsdecode(c.path), c.kind, c.detail, c.markers]
                                             for c in conflicts]}
    state["stop"] = stop
    _save(store, state)
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


def _finish(store: object, state: dict) -> Outcome:
    from layerctl.images import parse_name, set_tag

    state["phase"] = "finishing"
    _save(store, state)
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
    _clear(store)
    done = f"{state['op']} of {target['name']}: now at layer {tip[:12]}"
    if state.get("result_tag"):
        done += f", tagged {state['result_tag']}"
    for note in state.get("notes", []):
        done += f"\n  note: {note}"
    return Outcome(tip, done)


def _finish_container(store: object, state: dict) -> None:
    """The container onto the new base (state['container_base']) with the replayed
    pending changes (the tip) as its pending changes again."""
    base_id = state.get("container_base") or state["tip"]
    set_container(store, state["target"]["id"], base_id, state["tip"])


def set_container(store: object, cid: str, base_id: str, tree_id: str) -> None:
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


def _begin(store: object, state: dict, editor: Editor | None) -> Outcome:
    existing = load_state(store)
    if existing is not None:
        raise Conflict("a rebase is already in progress (see `layerctl status`); "
                       "finish it with --continue or --abort")
    for ref, sha in store.refs_under(REF_PREFIX).items():  # a killed start's leftovers
        store.delete_ref(ref, sha)
    state.setdefault("done", [])
    state.setdefault("phase", "running")
    _keep(store, "orig", state["orig"])
    _keep(store, "tip", state["tip"])
    if state.get("snapshot"):
        _keep(store, "pending", state["snapshot"])
    _save(store, state)
    try:
        return _run(store, state, editor)
    except RebaseStopped:
        raise
    except LayerctlError:
        # refused before anything moved (a split that selects nothing, a tag moved
        # meanwhile): nothing to continue, so leave no rebase behind
        abort(store)
        raise


def _require(store: object) -> dict:
    state = load_state(store)
    if state is None:
        raise NoRebase("no rebase in progress")
    if state.get("broken"):
        raise NoRebase("the rebase state is unreadable; use --abort")
    return state


def continue_(store: object, editor: Editor | None = None) -> Outcome:
    from layerctl.containers import api

    state = _require(store)
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
                                   trailers=_base_trailers(state), author=step.get("author"),
                                   when=step.get("when"))
            if step["action"] in ("squash", "fixup"):
                new = _combine(store, state, new, step, editor)
            state["tip"] = new
            _keep(store, "tip", new)
            state["todo"].pop(0)
            state["done"].append(step)
        elif resolved_layer.root != at.root:  # an edit stop: amend the layer
            new = write_step_layer(store, resolved_layer.root, _parent(store, at), at.config, at,
                                   trailers=_rebased(at))
            state["tip"] = new
            _keep(store, "tip", new)
        _end_stop(store, state)
    return _run(store, state, editor)


def _remade_container(store: object, stop: dict) -> bool:
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


def _check_resolved(store: object, root: DirRef, stop: dict) -> None:
    left = []
    for path, _kind, _detail, markers in stop["conflicts"]:
        if not markers:
            continue
        found = lookup(store, root, os.fsencode(path))
        if found and found[0].kind == FILE and has_markers(store.read_blob(found[1])):
            left.append(path_text(os.fsencode(path)))
    if left:
        raise Conflict(f"still has conflict markers: {', '.join(left)} (edit them in container "
                       f"{stop['container']}, or use --skip or --abort)")


def _end_stop(store: object, state: dict) -> None:
    from layerctl.containers import api

    stop = state.pop("stop")
    _save(store, state)
    with contextlib.suppress(NotFound):
        api.remove(store, stop["container"], force=True)
    _keep(store, "stop", None)


def skip(store: object, editor: Editor | None = None) -> Outcome:
    state = _require(store)
    if not state.get("stop") or not state["stop"]["conflicts"]:
        raise BadInput("nothing to skip: the rebase is not stopped at a conflict")
    step = state["todo"].pop(0)
    step["action"] = "drop"
    state["done"].append(step)
    _end_stop(store, state)
    return _run(store, state, editor)


def abort(store: object) -> str:
    """Back to exactly where the operation started: tags, the container, no rebase refs."""
    from layerctl.containers import api
    from layerctl.images import parse_name, set_tag

    state = _require(store) if load_state(store) is not None else None
    if state is None:
        if store.refs_under(REF_PREFIX):
            _clear(store)
            return "removed an interrupted rebase's leftovers"
        raise NoRebase("no rebase in progress")
    if state.get("broken"):
        _clear(store)
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
        if current == state["tip"] and current != old:  # ours, not another writer's
            if old is None:
                store.delete_ref(name.ref, current)
            else:
                set_tag(store, name, old, current)
    _clear(store)
    return f"{state['op']} of {target['name']} aborted"


# -- targets ----------------------------------------------------------------------------


@dataclass
class _Target:
    kind: str  # "image" | "container"
    name: str
    top: str  # image: its top layer; container: its base layer
    tag: str | None = None  # the image name when the user named an image tag
    container: object | None = None
    snapshot: str | None = None  # the container's pending changes, as a layer


def _resolve_target(store: object, ref: str, snapshot: bool) -> _Target:
    from layerctl.images import InvalidName, parse_name, resolve

    try:
        top = resolve(store, ref)
    except (NotFound, InvalidName) as e:
        from layerctl.containers.state import find

        c = find(store, ref)
        if c is None:
            raise NotFound(f"no such image, layer or container: {ref}") from e
        from layerctl.containers.state import base

        t = _Target("container", c.name, base(store, c), container=c)
        if snapshot:
            t.snapshot = snapshot_container_changes(store, c)
        return t
    tag = None
    with contextlib.suppress(InvalidName):
        name = parse_name(ref)
        if store.ref(name.ref) == top:
            tag = str(name)
    return _Target("image", ref, top, tag)


def snapshot_container_changes(store: object, c: object) -> str | None:
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


def _target_state(store: object, t: _Target, op: str, tip: str) -> dict:
    target = {"kind": t.kind, "name": t.name}
    if t.kind == "container":
        target.update(id=t.container.id, lower=t.container.lower or t.top)
    return {"op": op, "target": target, "orig": t.top, "tip": tip, "snapshot": t.snapshot}


def _pending_steps(t: _Target) -> list[dict]:
    return [{"action": "pending", "layer": t.snapshot}] if t.snapshot else []


def _refuse_running(store: object, t: _Target) -> None:
    if t.kind == "container":
        from layerctl import runtime

        if runtime.status(store, t.container.id)[0] == "running":
            raise Conflict(f"container {t.name} is running; stop it first")


def _chain_ids(store: object, top: str) -> list[Layer]:
    from layerctl.images import chain

    return chain(store, top)


def _index(layers: list[Layer], layer_id: str, what: str, name: str) -> int:
    for i, layer in enumerate(layers):
        if layer.id == layer_id:
            return i
    raise BadInput(f"{what} {layer_id[:12]} is not a layer of {name}")


# -- rebase -----------------------------------------------------------------------------


def find_old_base(store: object, t: _Target, layers: list[Layer]) -> tuple[int, str]:
    """(index of OLDBASE in `layers`, how it was found): a previous rebase's Base-Layer
    trailer (OCI's base annotation), else the nearest ancestor that tops an imported
    or pulled image (waste.default_base)."""
    from layerctl.history import Target
    from layerctl.waste import default_base

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


def rebase(store: object, ref: str, onto: str, base: str | None = None, mode: str = "replay",
           in_place: bool = False, tag: str | None = None, force: bool = False) -> Outcome:
    from layerctl.images import parse_name, resolve

    if mode not in ("replay", "swap"):
        raise BadInput(f"unknown rebase mode {mode!r}: use replay or swap")
    onto_id = resolve(store, onto)
    t = _resolve_target(store, ref, snapshot=False)
    if t.kind == "container" and mode == "swap":
        raise BadInput("swap mode rebases images only; a container's changes are replayed")
    layers = _chain_ids(store, t.top)
    if base:
        base_id = resolve(store, base)
        old_index = _index(layers, base_id, "--base", t.name)
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
    _refuse_running(store, t)
    if t.kind == "container":
        t.snapshot = snapshot_container_changes(store, t.container)
    state = _target_state(store, t, "rebase", onto_id)
    state.update(mode=mode, onto=onto_id, onto_name=onto,
                 todo=[{"action": "pick", "layer": la.id} for la in layers[old_index + 1:]]
                 + _pending_steps(t))
    if t.kind == "image":
        result = tag or (t.tag if in_place else None)
        if result is None:
            if t.tag is None:
                raise BadInput(f"{t.name} is not an image tag: name the result with -t NAME:TAG")
            n = parse_name(t.tag)
            result = f"{n.repository}:{n.tag}-rebased"
        state["result_tag"] = str(parse_name(result))
        state["result_tag_old"] = store.ref(parse_name(result).ref)
    out = _begin(store, state, None)
    if state.get("warnings"):
        out.message = ("warning: swap ignores " + str(len(state["warnings"])) + " conflicts:\n"
                       + "\n".join("  " + w for w in state["warnings"]) + "\n" + out.message)
    return out


def _swap_preconditions(store: object, layers: list[Layer], old_index: int) -> None:
    """regctl's: the old base's layers are exactly the image's first layers, each with
    a DiffID (layerctl's layers are their own history entries, so the history check is
    the identity of the commits)."""
    for layer in layers[: old_index + 1]:
        if not layer.diff_id:
            raise BadInput(f"layer {layer.id[:12]} has no DiffID: swap needs one per layer")


# -- cherry-pick, revert ----------------------------------------------------------------


def _apply_layers(store: object, onto: str, steps: list[dict], op: str) -> Outcome:
    return _edit_history(store, onto, None, steps, op, None)


def cherry_pick(store: object, layer: str, onto: str) -> Outcome:
    from layerctl.images import resolve

    layer_id = resolve(store, layer)
    if read_layer(store, layer_id).parent is None:
        raise BadInput(f"{layer} is a base layer: it has no changeset to pick")
    return _apply_layers(store, onto, [{"action": "pick", "layer": layer_id}],
                         "cherry-pick")


def revert(store: object, layer: str, onto: str) -> Outcome:
    from layerctl.images import resolve

    return _apply_layers(store, onto, [{"action": "revert", "layer": resolve(store, layer)}],
                         "revert")


# -- interactive, squash, split ---------------------------------------------------------


def todo_text(store: object, ref: str, base: str | None) -> tuple[str, list[Layer], int]:
    """The editable todo list (git's format) of the layers above the base."""
    t, layers, index = _interactive_target(store, ref, base)
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


def _interactive_target(store: object, ref: str, base: str | None
                        ) -> tuple[_Target, list[Layer], int]:
    from layerctl.images import resolve

    t = _resolve_target(store, ref, snapshot=False)
    layers = _chain_ids(store, t.top)
    if base:
        index = _index(layers, resolve(store, base), "--base", t.name)
    else:
        index, _how = find_old_base(store, t, layers)
    return t, layers, index


def parse_todo(text: str, layers: list[Layer]) -> list[dict]:
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


def interactive(store: object, ref: str, base: str | None, editor: Editor) -> Outcome:
    text, layers, index = todo_text(store, ref, base)
    steps = parse_todo(editor(text), layers[index + 1:])
    if not steps:
        return Outcome(layers[-1].id, "nothing to do (empty todo list)")
    return _edit_history(store, ref, layers[index].id, steps, "rebase -i", editor)


def _edit_history(store: object, ref: str, start: str | None, steps: list[dict], op: str,
                  editor: Editor | None) -> Outcome:
    """Run `steps` on `ref` (an image tag or a container) from layer `start` (None: its
    top, where cherry-pick and revert add theirs)."""
    t = _resolve_target(store, ref, snapshot=False)
    _refuse_running(store, t)
    if t.kind == "container":
        t.snapshot = snapshot_container_changes(store, t.container)
    state = _target_state(store, t, op, start or t.top)
    state["todo"] = steps + _pending_steps(t)
    if t.kind == "image":
        if t.tag is None:
            raise BadInput(f"{ref} is not an image tag or a container")
        state["result_tag"] = t.tag
        state["result_tag_old"] = t.top
    return _begin(store, state, editor)


def squash(store: object, ref: str, span: str | None = None, message: str | None = None
           ) -> Outcome:
    """Fold FROM..TO (the layers after FROM up to TO, as git reads a range; default:
    every layer above the image's base) into one layer; the layers above keep their
    trees."""
    from layerctl.images import resolve

    t, layers, index = _interactive_target(store, ref, None)
    if span:
        first, sep, last = span.partition("..")
        if not sep:
            raise BadInput(f"invalid range {span!r}: use FROM..TO")
        lo = _index(layers, resolve(store, first), "FROM", t.name) if first else -1
        hi = _index(layers, resolve(store, last), "TO", t.name) if last else len(layers) - 1
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
    return _edit_history(store, ref, start, steps, "squash", None)


def split(store: object, layer: str, paths: list[str], ref: str | None = None) -> Outcome:
    """`layer`'s changes under `paths` into a layer of their own, the rest above it."""
    from layerctl.images import resolve
    from layerctl.store.edit import split_path

    if not paths:
        raise BadInput("name the paths to split out: split LAYER -- PATH...")
    layer_id = resolve(store, layer)
    target = ref or _image_holding(store, layer_id)
    t, layers, _index_ = _interactive_target(store, target, None)
    i = _index(layers, layer_id, "layer", t.name)
    if i == 0:
        raise BadInput("cannot split a base layer")
    clean = ["/".join(p.decode() for p in split_path(os.fsencode(p))) for p in paths]
    steps = [{"action": "split", "layer": layer_id, "paths": clean}]
    steps += [{"action": "pick", "layer": la.id} for la in layers[i + 1:]]
    return _edit_history(store, target, layers[i - 1].id, steps, "split", None)


def _image_holding(store: object, layer_id: str) -> str:
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
