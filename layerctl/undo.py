"""`layerctl undo`: bring back the state before the last operation, from the journal.

An operation is one command (store/journal.py): the ref moves it made, oldest
first, and the snapshots of containers' pending changes it took before
discarding them. Undo moves each ref back (compare-and-swap from the value the
operation left; a ref moved since by something else stops the undo before it
changes anything), then puts each snapshotted container back on its old base with
its old pending changes. Undoing is an operation too, journaled as such: running
undo again goes one operation further back (lazygit's `z`), and an undo a crash
cut short is finished by the next one (every step is idempotent: a ref already
back is skipped, a container is reset and rewritten from the snapshot).
Snapshot refs (refs/undo/...) are never removed by undo: they are what it needs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from layerctl import faults
from layerctl.errors import Conflict, LayerctlError, NotFound
from layerctl.store import journal
from layerctl.store.journal import Entry


class NothingToUndo(LayerctlError):
    """The journal holds no operation left to undo."""


@dataclass
class Plan:
    op: str
    label: str
    time: int
    moves: list[tuple[str, str | None, str | None]] = field(default_factory=list)  # ref, from, to
    containers: list[tuple[str, str, str]] = field(default_factory=list)  # id, snapshot, base
    notes: list[str] = field(default_factory=list)

    def describe(self) -> list[str]:
        out = []
        for ref, now, back in self.moves:
            what = _ref_words(ref)
            if back is None:
                out.append(f"remove {what} (now {now[:12]})")
            elif now is None:
                out.append(f"restore {what} -> {back[:12]}")
            else:
                out.append(f"move {what} {now[:12]} -> {back[:12]}")
        for cid, sid, base in self.containers:
            kind = "no pending changes" if sid == base else f"pending changes of {sid[:12]}"
            out.append(f"container {cid[:12]}: back on {base[:12]} with {kind}")
        return out + self.notes


def _pick(entries: list[Entry]) -> str | None:
    """The operation to undo: an undo a crash cut short, else the last operation
    neither an undo nor undone."""
    undo_ops = {e.op for e in entries if e.kind in ("U", "D")}
    done = {e.fields[0] for e in entries if e.kind == "D"}
    begun = [e.fields[0] for e in entries if e.kind == "U"]
    unfinished = [t for t in begun if t not in done]
    if unfinished:
        return unfinished[-1]
    order: list[str] = []
    for e in entries:
        if e.op not in undo_ops and e.op not in done and e.op not in order:
            order.append(e.op)
    return order[-1] if order else None


def plan(store: object) -> Plan:
    """What `undo` would do now (nothing changed)."""
    from layerctl.containers.state import REF_PREFIX as CONTAINER_REFS
    from layerctl.containers.state import state_dir

    entries = journal.read_journal(store.root)
    target = _pick(entries)
    if target is None:
        raise NothingToUndo("nothing to undo: no command has moved a ref or discarded "
                            "changes in this store")
    mine = [e for e in entries if e.op == target]
    p = Plan(target, mine[0].label, mine[0].time)
    seen: set[str] = set()
    for e in mine:
        if e.kind == "S" and e.fields[0] not in seen:
            seen.add(e.fields[0])
            p.containers.append((e.fields[0], e.fields[1], e.fields[2]))
    virtual: dict[str, str | None] = {}
    for e in reversed([e for e in mine if e.kind == "M"]):
        ref, old, new = e.fields[0], _null(e.fields[1]), _null(e.fields[2])
        if ref.startswith("refs/undo/"):
            continue  # the snapshots undo needs stay
        cid = ref[len(CONTAINER_REFS):] if ref.startswith(CONTAINER_REFS) else None
        if cid in seen:
            continue  # put back with the container's snapshot
        if cid is not None and old is None:
            p.notes.append(f"container {cid[:12]} was created: `layerctl rm` removes it")
            continue
        if cid is not None and not os.path.isfile(os.path.join(state_dir(store, cid),
                                                                "state.json")):
            # removed (rm): a base ref alone would be a container without files
            if old is not None:
                p.notes.append(f"container {cid[:12]} was removed: its base layer "
                               f"{old[:12]} is not brought back")
            continue
        now = virtual[ref] if ref in virtual else store.ref(ref)
        if now == old:
            continue  # already back (an undo a crash stopped, or a move that never landed)
        if now != new:
            raise Conflict(f"cannot undo `{p.label}`: {_ref_words(ref)} was moved since, "
                           f"to {now[:12] if now else 'nothing'}; undo or redo that first")
        if old is not None and not store.has(bytes.fromhex(old)):
            raise NotFound(f"cannot undo `{p.label}`: layer {old[:12]} is gone (a prune "
                           "removed it); nothing was changed")
        p.moves.append((ref, now, old))
        virtual[ref] = old
    return p


def _null(value: str) -> str | None:
    return None if value == journal.NULL else value


def _ref_words(ref: str) -> str:
    from layerctl.containers.state import REF_PREFIX as CONTAINERS
    from layerctl.images import REF_PREFIX, name_from_ref

    if ref.startswith(REF_PREFIX):
        return f"tag {name_from_ref(ref)}"
    if ref.startswith(CONTAINERS):
        return f"the base of container {ref[len(CONTAINERS):][:12]}"
    return ref


def undo(store: object) -> Plan:
    """Undo the last operation (see the module docstring); returns what was done."""
    from layerctl.containers.lifecycle import refuse_if_running
    from layerctl.containers.snapshots import bring_back
    from layerctl.containers.state import locked, resolve

    p = plan(store)
    with journal.operation(f"undo {p.label}"):
        journal.record_undo(store.root, p.op, done=False)
        for ref, now, back in p.moves:
            faults.point("undo.move-ref")
            if back is None:
                store.delete_ref(ref, now, f"undo: {p.label}")
            else:
                store.set_ref(ref, now, back, f"undo: {p.label}")
        for cid, sid, base in p.containers:
            try:
                c = resolve(store, cid)
            except NotFound:
                p.notes.append(f"container {cid[:12]} no longer exists: its changes are "
                               f"kept as layer {sid[:12]}")
                continue
            with locked(store, c):
                refuse_if_running(store, c, "undo changes of")
                bring_back(store, c, sid, base, f"before undo in {c.name}")
        faults.point("undo.before-done")
        journal.record_undo(store.root, p.op, done=True)
    return p
