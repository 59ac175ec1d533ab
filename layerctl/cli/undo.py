"""Nothing is lost: `reflog`, `undo`, `stash`, and the `commit --patch` prompts."""

from __future__ import annotations

import sys
import time

import click

from layerctl.cli.common import open_store, path_text

_SETTINGS = {"help_option_names": ["-h", "--help"]}


# -- reflog -------------------------------------------------------------------------


def _ref_label(ref: str) -> str:
    from layerctl.containers.state import REF_PREFIX as CONTAINERS
    from layerctl.images import REF_PREFIX, name_from_ref

    if ref.startswith(REF_PREFIX):
        return str(name_from_ref(ref))
    if ref.startswith(CONTAINERS):
        return "container " + ref[len(CONTAINERS):][:12]
    return ref


@click.command("reflog", context_settings=_SETTINGS)
@click.option("--all", "show_all", is_flag=True,
              help="Also hidden refs (snapshots, stashes, pulls).")
@click.argument("name", required=False)
@click.pass_context
def reflog_cmd(ctx: click.Context, show_all: bool, name: str | None) -> None:
    """Show where an image tag or container base has been (all tags, newest first,
    without NAME). NAME@{n} names the n-th previous value wherever a layer is taken."""
    from layerctl.images import REF_PREFIX, reflog_ref
    from layerctl.store.journal import logged_refs, read_reflog

    store = open_store(ctx)
    if name:
        refs = [(reflog_ref(store, name), name)]
    else:
        from layerctl.containers.state import REF_PREFIX as CONTAINERS

        wanted = ("refs/",) if show_all else (REF_PREFIX, CONTAINERS)
        refs = [(r, _ref_label(r)) for r in logged_refs(store.root)
                if r.startswith(wanted)]
    rows = []
    for ref, label in refs:
        log = read_reflog(store.root, ref)
        for n, e in enumerate(reversed(log)):
            rows.append((e.time, len(log) - n, ref, label, n, e))
    rows.sort(key=lambda r: (r[0], r[1]), reverse=True)
    for _t, _k, _ref, label, n, e in rows:
        value = (e.new or "0" * 12)[:12]
        action, _, rest = e.message.partition(" ")
        text = f"{action.rstrip(':')}: {rest}" if rest else action
        if e.new is None:
            text += " (deleted)"
        click.echo(f"{value} {label}@{{{n}}}: {text}")


# -- undo ---------------------------------------------------------------------------


@click.command("undo", context_settings=_SETTINGS)
@click.option("-n", "--dry-run", is_flag=True, help="Only show what would be undone.")
@click.pass_context
def undo_cmd(ctx: click.Context, dry_run: bool) -> None:
    """Bring back the state before the last command that moved a tag or a container's
    base, or discarded pending changes (repeat to go further back)."""
    from layerctl import undo

    store = open_store(ctx)
    plan = undo.plan(store) if dry_run else undo.undo(store)
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(plan.time))
    click.echo(f"{'would undo' if dry_run else 'undid'}: {plan.label} ({when})")
    for line in plan.describe():
        click.echo(f"  {line}")


# -- stash --------------------------------------------------------------------------


@click.group("stash", context_settings=_SETTINGS, invoke_without_command=True)
@click.pass_context
def stash_cmd(ctx: click.Context) -> None:
    """Save a container's pending changes and clear them (`stash push CONTAINER`),
    list them, and put them back (`pop`, `apply`) or drop them."""
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


@stash_cmd.command("push", context_settings=_SETTINGS)
@click.option("-m", "--message", default="", help="What the stash holds.")
@click.argument("container")
@click.pass_context
def stash_push(ctx: click.Context, message: str, container: str) -> None:
    """Save CONTAINER's pending changes as stash@{0} and clear them."""
    from layerctl.containers import stash

    c, sid = stash.push(open_store(ctx), container, message)
    click.echo(f"saved the pending changes of {c.name} as stash@{{0}} ({sid[:12]})")


@stash_cmd.command("list", context_settings=_SETTINGS)
@click.argument("container")
@click.pass_context
def stash_list(ctx: click.Context, container: str) -> None:
    """List CONTAINER's stash entries, newest first."""
    from layerctl.containers import stash
    from layerctl.containers.state import resolve

    store = open_store(ctx)
    for e in stash.entries(store, resolve(store, container)):
        first = e.message.splitlines()[0] if e.message else ""
        click.echo(f"stash@{{{e.index}}}: {e.layer_id[:12]} on {e.base_id[:12]}: {first}")


def _stash_apply(ctx: click.Context, container: str, index: int, drop: bool) -> None:
    from layerctl.containers import stash

    e = stash.apply(open_store(ctx), container, index, drop=drop)
    click.echo(f"{'popped' if drop else 'applied'} stash@{{{index}}} ({e.layer_id[:12]})")


@stash_cmd.command("pop", context_settings=_SETTINGS)
@click.argument("container")
@click.argument("index", type=int, default=0)
@click.pass_context
def stash_pop(ctx: click.Context, container: str, index: int) -> None:
    """Write stash@{INDEX} back into CONTAINER and drop it."""
    _stash_apply(ctx, container, index, True)


@stash_cmd.command("apply", context_settings=_SETTINGS)
@click.argument("container")
@click.argument("index", type=int, default=0)
@click.pass_context
def stash_apply(ctx: click.Context, container: str, index: int) -> None:
    """Write stash@{INDEX} back into CONTAINER, keeping it."""
    _stash_apply(ctx, container, index, False)


@stash_cmd.command("drop", context_settings=_SETTINGS)
@click.argument("container")
@click.argument("index", type=int, default=0)
@click.pass_context
def stash_drop(ctx: click.Context, container: str, index: int) -> None:
    """Remove stash@{INDEX} of CONTAINER (`undo` brings it back)."""
    from layerctl.containers import stash

    e = stash.drop(open_store(ctx), container, index)
    click.echo(f"dropped stash@{{{index}}} ({e.layer_id[:12]})")


# -- commit --patch -----------------------------------------------------------------

_HELP = """y - stage this hunk
n - do not stage this hunk
q - quit; do not stage this hunk or any of the remaining ones
a - stage this hunk and all later hunks in the file
d - do not stage this hunk or any of the later hunks in the file
s - split the current hunk into smaller hunks
? - print help"""


def _ask(question: str, keys: str) -> str:
    """One answer from stdin (git add -p reads lines too); end of input is q."""
    while True:
        click.echo(f"{question} [{','.join(keys)},?]? ", nl=False)
        sys.stdout.flush()
        line = sys.stdin.readline()
        if not line:
            click.echo("")
            return "q"
        if not sys.stdin.isatty():
            click.echo(line.rstrip("\n"))  # a transcript reads as a terminal would show it
        answer = line.strip()[:1].lower()
        if answer in keys:
            return answer
        click.echo(_HELP)


def choose_hunks(items: list) -> list:
    """git add -p's dialogue over the pending patches (containers/hunks.py Chooser)."""
    from layerctl.containers.hunks import Choice, splittable

    out = []
    quit_all = False
    for fp in items:
        if quit_all:
            break
        for line in fp.header:
            click.echo(line)
        if not splittable(fp.change) or not fp.hunks:
            for h in fp.hunks:
                click.echo("\n".join(fp.hunk_lines(h)))
            answer = _ask(f"Stage this change to {path_text(fp.change.path)}", "ynqad")
            if answer in "ya":
                out.append(Choice(fp, None))
            quit_all = answer == "q"
            continue
        queue = list(fp.hunks)
        taken = []
        k = 0
        while k < len(queue):
            h = queue[k]
            click.echo("\n".join(fp.hunk_lines(h)))
            parts = fp.split(h)
            keys = "ynqads" if len(parts) > 1 else "ynqad"
            answer = _ask(f"({k + 1}/{len(queue)}) Stage this hunk", keys)
            if answer == "s":
                click.echo(f"Split into {len(parts)} hunks.")
                queue[k:k + 1] = parts
                continue
            if answer in "ya":
                taken.append(h)
            if answer == "a":
                taken.extend(queue[k + 1:])
            if answer in "adq":
                quit_all = answer == "q"
                break
            k += 1
        if taken:
            out.append(Choice(fp, taken if len(taken) < len(queue) else None))
    return out
