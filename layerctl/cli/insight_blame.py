"""Path history commands: blame and bisect (core: layerctl.insight.blame and .bisect)."""

from __future__ import annotations

import base64
import json
import os
import sys
from typing import TYPE_CHECKING

import click

from layerctl.cli.common import echo_package_warnings, human_size, open_store, path_text
from layerctl.errors import BadInput, LayerctlError

if TYPE_CHECKING:
    from layerctl.store.repo import Store


def _resolve_target(store: Store, target: str) -> tuple[list, object | None]:
    """IMAGE|CONTAINER|LAYER -> (layer chain oldest first, container or None)."""
    from layerctl.images import chain as layer_chain
    from layerctl.images import resolve

    c = None
    if os.path.isdir(store.path("containers")):  # else skip importing the containers code
        from layerctl.containers.state import base, find

        c = find(store, target)
        if c is not None:
            return layer_chain(store, base(store, c)), c
    return layer_chain(store, resolve(store, target)), None


def _path_json(path: bytes) -> dict:
    try:
        return {"path": "/" + path.decode("utf-8")}
    except UnicodeDecodeError:
        return {"path_base64": base64.b64encode(b"/" + path).decode("ascii")}


def _step_fields(step: object) -> dict:
    layer = step.layer
    if layer is None:
        return {"layer": step.id, "short": step.short, "created": None, "created_by": None,
                "author": None, "message": None}
    return {"layer": layer.id, "short": step.short, "created": layer.created_iso,
            "created_by": layer.created_by, "author": layer.author_name,
            "message": layer.summary}


def _package_json(pkg: object) -> dict | None:
    if pkg is None:
        return None
    return {"format": pkg.kind, "name": pkg.key, "version": pkg.version, "arch": pkg.arch}


def _event_json(e: object, owners: dict) -> dict:
    meta = e.meta
    out = {**_step_fields(e.step), "change": e.change, "mechanism": e.mechanism or None,
           "package": _package_json(owners.get(id(e)))}
    if e.where is not None:
        out["where"] = _path_json(e.where).popitem()[1]
    if meta is not None:
        out.update(kind=meta.kind, size=meta.size, mode=f"{meta.mode:04o}", uid=meta.uid,
                   gid=meta.gid)
    out["blob"] = e.blob.hex() if e.blob else None
    out["details"] = e.details
    return out


def _when(step: object) -> str:
    return step.layer.created_iso[:10] if step.layer else "-"


def _who_what(step: object) -> str:
    layer = step.layer
    if layer is None:
        return "pending changes"
    msg = layer.summary or layer.created_by or "(no message)"
    return f"{layer.author_name}  {msg}"


def _facts(e: object) -> str:
    meta = e.meta
    if meta is None:
        return ""
    size = f"{human_size(meta.size)}  " if meta.kind == "-" else ""
    return f"{size}{meta.kind}{meta.mode:04o} {meta.uid}:{meta.gid}"


def _event_line(e: object, label: str, owners: dict) -> str:
    extra = ""
    if e.change == "D":
        where = path_text(e.where) if e.where is not None else ""
        extra = f"  ({e.mechanism}{': ' + where if where and e.mechanism != 'whiteout' else ''})"
    elif e.details:
        extra = f"  ({', '.join(e.details)})"
    facts = "" if e.change == "D" else f"  {_facts(e)}"
    pkg = owners.get(id(e))
    owned = f"  [{pkg.kind} {pkg.key} {pkg.version}]" if pkg is not None else ""
    return (f"  {label:<9} {e.step.short:<13} {_when(e.step):<10}  {_who_what(e.step)}"
            f"{facts}{extra}{owned}")


def _print_history(hist: object, all_events: bool, owners: dict) -> None:
    click.echo(path_text(hist.path) + ("/" if hist.is_dir else ""))
    if not hist.events:
        click.echo("  (never present in this chain)")
        return
    if all_events:
        for e in hist.events:
            click.echo(_event_line(e, e.change, owners))
        return
    if not hist.exists:
        click.echo(_event_line(hist.deleted, "deleted", owners))
        return
    content, metadata, added = hist.content, hist.metadata, hist.introduced
    if not hist.is_dir:
        click.echo(_event_line(content, "content", owners))
    if metadata is not None and (hist.is_dir or metadata is not content):
        click.echo(_event_line(metadata, "metadata", owners))
    if added is not None and (hist.is_dir or added is not content):
        click.echo(_event_line(added, "added", owners))
    earlier = [e for e in hist.events if e.change == "D"]
    if earlier:
        click.echo(f"  (deleted {len(earlier)} time(s) before; --all-events shows every event)")


def _parse_range(text: str) -> tuple[int, int]:
    try:
        a, _, b = text.partition(",")
        start = int(a) if a else 1
        end = int(b) if b else sys.maxsize
    except ValueError:
        raise BadInput(f"-L {text!r}: use START,END (line numbers)") from None
    if start < 1 or end < start:
        raise BadInput(f"-L {text!r}: use START,END with 1 <= START <= END")
    return start, end


@click.command("blame")
@click.argument("target")
@click.argument("paths", nargs=-1, required=True)
@click.option("--all-events", is_flag=True, help="List every event along the chain.")
@click.option("-L", "line_range", default=None, metavar="START,END",
              help="Which layer last changed each line of a text file.")
@click.option("--summary", is_flag=True, help="Directories: bytes per layer under it.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def blame_cmd(ctx: click.Context, target: str, paths: tuple[str, ...], all_events: bool,
              line_range: str | None, summary: bool, as_json: bool) -> None:
    """For each PATH in IMAGE, CONTAINER or LAYER: the layers that added it, last
    changed its content and its metadata, or deleted it (and how)."""
    from layerctl.insight import blame

    store = open_store(ctx)
    chain, container = _resolve_target(store, target)
    parsed = [b"/".join(blame.parse_path(p)) for p in paths]
    pend = blame.pending_of(store, container, parsed) if container is not None else None
    lookup = blame.PathLookup(store)
    span = _parse_range(line_range) if line_range else None
    results = []
    for path in parsed:
        hist, _ = blame.path_history(store, chain, path, pend, lookup)
        if span is not None:
            lines = blame.line_blame(store, hist, pend)
            results.append((hist, [ln for ln in lines if span[0] <= ln.number <= span[1]]))
        elif hist.is_dir and not all_events:
            if container is not None:  # a directory view needs every pending change under it
                pend = blame.pending_of(store, container, None)
            results.append((hist, blame.dir_view(store, chain, path, pend)))
        else:
            results.append((hist, None))
    owners = _owners(store, chain, [h for h, _ in results], container)
    if as_json:
        click.echo(json.dumps([_json(h, extra, summary, owners) for h, extra in results],
                              indent=2))
        return
    for hist, extra in results:
        if isinstance(extra, list):
            _print_lines(hist, extra)
        elif extra is not None:
            _print_dir(hist, extra, summary)
        else:
            _print_history(hist, all_events, owners)


def _owners(store: Store, chain: list, hists: list, container: object) -> dict:
    """id(event) -> the package that lists the path in the event's layer (for a
    deletion: in the layer before it; for a container's pending change: in its
    view), when a package database there says so."""
    from layerctl.insight.packages import Packages, pending_trees

    pkgs = Packages(store)
    view = None
    out = {}
    for hist in hists:
        for e in hist.events:
            if e.meta is not None and e.meta.kind == "d":
                continue  # dpkg lists directories under every package that uses them
            i = e.step.index - (1 if e.change == "D" else 0)
            if 0 <= i < len(chain):
                tree = pkgs.tree(chain[i].root, chain[i].id[:12])
            elif container is not None and i == len(chain):
                if view is None:  # every pending change: the database and its file lists
                    from layerctl.containers.worktree import pending

                    view = pending_trees(pkgs, pending(store, container))[1]
                tree = view
            else:
                continue
            pkg = pkgs.owner(tree, hist.path)
            if pkg is not None:
                out[id(e)] = pkg
    echo_package_warnings(pkgs)
    return out


def _json(hist: object, extra: object, summary: bool, owners: dict) -> dict:
    def layer_of(e: object) -> str | None:
        return e.step.id if e is not None else None

    out = {**_path_json(hist.path), "exists": hist.exists,
           "events": [_event_json(e, owners) for e in hist.events],
           "content_layer": layer_of(hist.content), "metadata_layer": layer_of(hist.metadata),
           "introduced_layer": layer_of(hist.introduced), "deleted_layer": layer_of(hist.deleted)}
    if isinstance(extra, list):
        out["lines"] = [{"line": ln.number, "layer": ln.step.id,
                         "text": ln.text.decode("utf-8", "replace")} for ln in extra]
    elif extra is not None:
        out["children"] = [{**_path_json(hist.path + b"/" + name), "layer": step.id}
                           for name, step in extra.children.items()]
        if summary:
            out["bytes_by_layer"] = extra.bytes_by_step
    return out


def _print_lines(hist: object, lines: list) -> None:
    width = len(str(lines[-1].number)) if lines else 1
    for ln in lines:
        text = ln.text.rstrip(b"\n").decode("utf-8", "backslashreplace")
        who = ln.step.layer.author_name if ln.step.layer else "-"
        click.echo(f"{ln.step.short:<13} ({who} {_when(ln.step)} {ln.number:>{width}}) {text}")


def _print_dir(hist: object, view: object, summary: bool) -> None:
    click.echo(path_text(hist.path) + "/")
    if summary:
        rows = sorted(view.bytes_by_step.items(), key=lambda kv: view.steps[kv[0]].index)
        for sid, size in rows:
            step = view.steps[sid]
            click.echo(f"  {step.short:<13} {_when(step):<10}  {human_size(size):>8}  "
                       f"{_who_what(step)}")
        click.echo(f"  total {human_size(sum(view.bytes_by_step.values()))}")
        return
    for name, step in view.children.items():
        click.echo(f"  {step.short:<13} {_when(step):<10}  "
                   f"{name.decode('utf-8', 'backslashreplace'):<24}  {_who_what(step)}")


# -- bisect ---------------------------------------------------------------------------


def _report(outcome: object) -> None:
    if outcome.first_bad is not None:
        la = outcome.first_bad
        click.echo(f"{la.id} is the first bad layer")
        click.echo(f"Author: {la.author_name}")
        click.echo(f"Date:   {la.created_iso}")
        click.echo(f"    {la.summary or la.created_by}")
    elif outcome.current is not None:
        la = outcome.current
        click.echo(f"Bisecting: {outcome.remaining} layer(s) left to test after this "
                   f"(roughly {outcome.steps_left} step(s))")
        click.echo(f"[{la.id}] {la.summary or la.created_by}")
    else:
        click.echo("There are only 'skip'ped layers left to test.")
        click.echo("The first bad layer could be any of:")
        for la in outcome.undecided:
            click.echo(la.id)


@click.group("bisect")
def bisect_cmd() -> None:
    """Find the layer that broke something, by binary search (like git bisect)."""


@bisect_cmd.command("start")
@click.argument("bad")
@click.argument("good")
@click.pass_context
def bisect_start(ctx: click.Context, bad: str, good: str) -> None:
    """Start bisecting between layer BAD and an older layer GOOD."""
    from layerctl.insight import bisect

    _report(bisect.start(open_store(ctx), bad, good))


def _verdict_command(verdict: str) -> click.Command:
    @click.command(verdict)
    @click.argument("layer", required=False)
    @click.pass_context
    def cmd(ctx: click.Context, layer: str | None) -> None:
        from layerctl.insight import bisect

        _report(bisect.mark(open_store(ctx), verdict, layer))

    cmd.help = f"Mark LAYER (default: the one under test) {verdict}."
    return cmd


for _v in ("good", "bad", "skip"):
    bisect_cmd.add_command(_verdict_command(_v))


@bisect_cmd.command("reset")
@click.pass_context
def bisect_reset(ctx: click.Context) -> None:
    """End the bisect session."""
    from layerctl.insight import bisect

    bisect.reset(open_store(ctx))


@bisect_cmd.command("log")
@click.pass_context
def bisect_log(ctx: click.Context) -> None:
    """Show what has been marked so far."""
    from layerctl.insight import bisect

    click.echo(bisect.read_log(open_store(ctx)), nl=False)


@bisect_cmd.command("run", context_settings={"ignore_unknown_options": True,
                                             "allow_interspersed_args": False})
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def bisect_run(ctx: click.Context, command: tuple[str, ...]) -> None:
    """Run COMMAND in a throwaway container of each layer under test: exit 0 good,
    125 skip, 1-127 bad, anything else stops the run."""
    from layerctl.insight import bisect

    store = open_store(ctx)
    outcome = bisect.status(store)
    while outcome.current is not None:
        layer = outcome.current
        click.echo(f"running {' '.join(command)} in {layer.id[:12]}")
        sys.stdout.flush()
        code = bisect.run_in_layer(store, layer.id, list(command))
        verdict = bisect.verdict_of(code)
        if verdict is None:
            raise LayerctlError(f"bisect run stopped: the command exited {code} in "
                                f"{layer.id[:12]} (0 good, 125 skip, 1-127 bad)")
        click.echo(f"{layer.id[:12]}: exit {code}: {verdict}")
        outcome = bisect.mark(store, verdict, layer.id)
    _report(outcome)
    if outcome.first_bad is None:
        raise LayerctlError("bisect run could not tell the first bad layer (only skipped "
                            "layers left)")
