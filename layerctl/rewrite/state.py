"""The state of a history edit under way: the todo list in `ROOT/rebase/state.json`
(written by rename), the `refs/rebase/*` that keep the layers it wrote reachable for
fsck and prune, and the one line `status` shows meanwhile."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

from layerctl import faults
from layerctl.errors import LayerctlError

if TYPE_CHECKING:
    from layerctl.store.repo import Store

STATE_DIR = "rebase"
REF_PREFIX = "refs/rebase/"
Editor: TypeAlias = Callable[[str], str]  # text in, the user's edit of it out
# state.json as JSON gives it back: op, target, orig, tip, todo, done, stop, phase...
State: TypeAlias = dict[str, Any]
Step: TypeAlias = dict[str, Any]  # one todo entry: action, layer, what the action adds
Config: TypeAlias = dict[str, Any]  # a layer's image config


class RebaseStopped(LayerctlError):
    """A step needs the user: conflicts to resolve, or an `edit` stop (exit code 1)."""


class NoRebase(LayerctlError):
    """--continue/--abort/--skip without an operation in progress."""


@dataclass
class Outcome:
    tip: str
    message: str


def state_path(store: Store) -> str:
    return store.path(STATE_DIR, "state.json")


def load_state(store: Store) -> State | None:
    import json

    try:
        with open(state_path(store), encoding="utf-8") as f:
            state: State = json.load(f)
            return state
    except FileNotFoundError:
        return None
    except ValueError:
        return {"broken": True}


def save_state(store: Store, state: State) -> None:
    from layerctl.containers.state import write_json_atomic

    os.makedirs(store.path(STATE_DIR), mode=0o700, exist_ok=True)
    faults.point("rebase.save-state")
    write_json_atomic(state_path(store), state)


def keep(store: Store, name: str, sha: str | None) -> None:
    """Point refs/rebase/NAME at `sha` (None: remove it): what keeps the layers an
    unfinished operation wrote reachable for fsck and prune."""
    ref = REF_PREFIX + name
    old = store.ref(ref)
    if sha is None:
        if old is not None:
            store.delete_ref(ref, old)
    elif old != sha:
        store.set_ref(ref, old, sha, f"rebase {name}")


def clear_state(store: Store) -> None:
    for ref, sha in store.refs_under(REF_PREFIX).items():
        store.delete_ref(ref, sha)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(state_path(store))


def progress_line(store: Store) -> str:
    """One line for `status` while an operation is under way ('' otherwise)."""
    if not os.path.exists(state_path(store)):
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


def require_state(store: Store) -> State:
    state = load_state(store)
    if state is None:
        raise NoRebase("no rebase in progress")
    if state.get("broken"):
        raise NoRebase("the rebase state is unreadable; use --abort")
    return state

