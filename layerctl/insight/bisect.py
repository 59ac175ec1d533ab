"""Bisecting a layer chain, as `git bisect` does across commits.

State lives in the store, like git's: refs/bisect/bad (the lowest layer known bad),
refs/bisect/good-<id> and refs/bisect/skip-<id> (which also keep those layers
reachable), refs/bisect/current (the layer under test) and a log under
ROOT/bisect/log that `bisect log` prints. The candidates are the first-parent
chain from the bad layer down to (not including) the first good layer.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from layerctl.errors import BadInput, Conflict, LayerctlError, NotFound
from layerctl.store.layers import Layer, read_layer

if TYPE_CHECKING:
    from layerctl.store.repo import Store

PREFIX = "refs/bisect/"
BAD, CURRENT = PREFIX + "bad", PREFIX + "current"
GOOD, SKIP = "good", "skip"
# `bisect run` exit codes, as git's: 0 good, 125 skip, 1..127 bad, others abort.
SKIP_CODE = 125


class NotBisecting(LayerctlError):
    """No bisect session is in progress."""


@dataclass
class Outcome:
    """After a mark: the next layer to test, or the first bad layer once known."""

    current: Layer | None
    first_bad: Layer | None
    remaining: int  # candidates still untested (skipped ones included)
    steps_left: int  # roughly log2(remaining)
    undecided: list[Layer]  # when only skipped layers remain: the first bad is among these


def _log_path(store: Store) -> str:
    return store.path("bisect", "log")


def _log(store: Store, line: str) -> None:
    os.makedirs(store.path("bisect"), exist_ok=True)
    with open(_log_path(store), "a", encoding="utf-8") as f:
        f.write(line + "\n")


def read_log(store: Store) -> str:
    try:
        with open(_log_path(store), encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        raise NotBisecting("not bisecting: use `layerctl bisect start BAD GOOD`") from None


def active(store: Store) -> bool:
    return store.ref(BAD) is not None


def _set(store: Store, name: str, value: str) -> None:
    store.set_ref(name, store.ref(name), value, "bisect")


def reset(store: Store) -> None:
    """End the session: drop every refs/bisect/* ref and the log."""
    for name, value in store.refs_under(PREFIX).items():
        store.delete_ref(name, value)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_log_path(store))


def start(store: Store, bad: str, good: str) -> Outcome:
    from layerctl.images import resolve

    if active(store):
        raise Conflict("a bisect session is in progress: `layerctl bisect reset` first")
    bad_id, good_id = resolve(store, bad), resolve(store, good)
    if bad_id == good_id:
        raise BadInput("the bad and the good layer are the same layer")
    _chain_down(store, bad_id, {good_id}, bad, good)
    reset(store)
    _log(store, f"# bad: {_line(read_layer(store, bad_id))}")
    _log(store, f"# good: {_line(read_layer(store, good_id))}")
    _log(store, f"layerctl bisect start {bad_id} {good_id}")
    _set(store, BAD, bad_id)
    _set(store, PREFIX + f"{GOOD}-{good_id}", good_id)
    return _next(store)


def _line(layer: Layer) -> str:
    return f"[{layer.id}] {layer.summary}"


def _goods(store: Store) -> set[str]:
    return {v for k, v in store.refs_under(PREFIX).items() if k.startswith(PREFIX + GOOD + "-")}


def _skips(store: Store) -> set[str]:
    return {v for k, v in store.refs_under(PREFIX).items() if k.startswith(PREFIX + SKIP + "-")}


def _chain_down(store: Store, bad_id: str, goods: set[str], bad_text: str = "",
                good_text: str = "") -> list[Layer]:
    """Layers from `bad_id` (included) down its first parents to a good one (excluded)."""
    out = []
    current: str | None = bad_id
    while current and current not in goods:
        layer = read_layer(store, current)
        out.append(layer)
        current = layer.parent
    if current is None:
        what = good_text or "the good layer"
        raise BadInput(
            f"{what} is not on the first-parent chain below {bad_text or bad_id[:12]}"
        )
    return out


def mark(store: Store, verdict: str, layer: str | None = None) -> Outcome:
    """Mark `layer` (default: the one under test) good, bad or skip."""
    from layerctl.images import resolve

    bad_id = store.ref(BAD)
    if bad_id is None:
        raise NotBisecting("not bisecting: use `layerctl bisect start BAD GOOD`")
    target = resolve(store, layer) if layer else store.ref(CURRENT)
    if target is None:
        raise NotBisecting("no layer is under test: the first bad layer is already known")
    chain = _chain_down(store, bad_id, _goods(store))
    ids = [la.id for la in chain]
    if verdict == "bad":
        if target not in ids:
            raise BadInput(f"{target[:12]} is not between the good and the bad layers")
        _set(store, BAD, target)
    elif verdict == GOOD:
        if target == bad_id or target not in ids:
            raise BadInput(f"{target[:12]} is not between the good and the bad layers")
        _set(store, PREFIX + f"{GOOD}-{target}", target)
    elif verdict == SKIP:
        _set(store, PREFIX + f"{SKIP}-{target}", target)
    else:
        raise BadInput(f"unknown verdict {verdict!r}: use good, bad or skip")
    _log(store, f"# {verdict}: {_line(read_layer(store, target))}")
    _log(store, f"layerctl bisect {verdict} {target}")
    return _next(store)


def status(store: Store) -> Outcome:
    if not active(store):
        raise NotBisecting("not bisecting: use `layerctl bisect start BAD GOOD`")
    return _next(store, move=False)


def _next(store: Store, move: bool = True) -> Outcome:
    """Pick the candidate nearest the middle of the untested range (skips avoided)."""
    bad_id = store.ref(BAD)
    chain = _chain_down(store, bad_id, _goods(store))  # [bad, ..., just above good]
    untested = chain[1:][::-1]  # oldest first
    skips = _skips(store)
    testable = [i for i, la in enumerate(untested) if la.id not in skips]
    if not untested:
        if move and store.ref(CURRENT):
            store.delete_ref(CURRENT, store.ref(CURRENT))
        if move:
            _log(store, f"# first bad layer: {_line(chain[0])}")
        return Outcome(None, chain[0], 0, 0, [])
    if not testable:
        if move and store.ref(CURRENT):
            store.delete_ref(CURRENT, store.ref(CURRENT))
        return Outcome(None, None, len(untested), 0, [*untested, chain[0]])
    middle = (len(untested) - 1) / 2
    pick = min(testable, key=lambda i: (abs(i - middle), i))
    layer = untested[pick]
    if move:
        _set(store, CURRENT, layer.id)
    return Outcome(layer, None, len(untested), max(len(untested).bit_length() - 1, 0), [])


def verdict_of(code: int) -> str | None:
    """A `bisect run` command's exit code as a verdict; None aborts the run."""
    if code == 0:
        return GOOD
    if code == SKIP_CODE:
        return SKIP
    if 0 < code < 128:
        return "bad"
    return None


def run_in_layer(store: Store, layer_id: str, argv: list[str]) -> int:
    """Run `argv` in a throwaway container made from `layer_id` (removed afterwards,
    also when it fails); returns the exit code."""
    import layerctl.containers as containers
    from layerctl import runtime

    rt = runtime.runtime_for(store)
    c, _notice = containers.create(store, layer_id)
    try:
        rootfs = containers.mount(store, c.id)
        bundle = runtime.bundle_path(store, c.id)
        runtime.make_bundle(bundle, rootfs, read_layer(store, layer_id).config, args=argv,
                            env=[], hostname=c.id[:12])
        return runtime.run(rt, c.id, bundle, interactive=False)
    finally:
        runtime.forget(store, c.id, force=True)
        with contextlib.suppress(NotFound):
            containers.remove(store, c.id, force=True)
