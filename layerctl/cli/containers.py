"""Container commands: create, ps, mount, umount, rm, status, commit, restore, reset,
and the container side of `diff` and `inspect`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from layerctl.cli import loop
from layerctl.cli.common import open_store, path_text
from layerctl.cli.views import default_container as _default_container  # noqa: F401 - history_edit
from layerctl.cli.views import show_ps, show_status

if TYPE_CHECKING:
    from layerctl.store.repo import Store

_SETTINGS = {"help_option_names": ["-h", "--help"]}


def _containers():  # noqa: ANN202 - the core package, imported when a command runs
    import layerctl.containers as containers

    return containers


@click.command("create", context_settings=_SETTINGS)
@click.option("--name", help="Assign a name to the container.")
@click.option("--driver", type=click.Choice(["overlay", "vfs"]), help="Storage driver.")
@click.argument("image")
@click.pass_context
def create_cmd(ctx: click.Context, name: str | None, driver: str | None, image: str) -> None:
    """Create a container from IMAGE and print its id."""
    loop.create(open_store(ctx), image, name=name, driver=driver)


@click.command("ps", context_settings=_SETTINGS)
@click.option("-a", "--all", "show_all", is_flag=True,
              help="Show all containers (default: mounted ones).")
@click.option("-q", "--quiet", is_flag=True, help="Only display container ids.")
@click.option("--no-trunc", is_flag=True, help="Do not truncate output.")
@click.option("--format", "fmt", metavar="TEMPLATE",
              help="Go-template output like Docker's: '{{.ID}} {{.Names}}', '{{json .}}'.")
@click.pass_context
def ps_cmd(
    ctx: click.Context, show_all: bool, quiet: bool, no_trunc: bool, fmt: str | None
) -> None:
    """List containers (mounted ones; -a for all)."""
    show_ps(open_store(ctx), show_all, quiet, no_trunc, fmt)


@click.command("mount", context_settings=_SETTINGS)
@click.argument("container")
@click.pass_context
def mount_cmd(ctx: click.Context, container: str) -> None:
    """Mount a container's filesystem and print the merged dir."""
    loop.mount(open_store(ctx), container)


@click.command("umount", context_settings=_SETTINGS)
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def umount_cmd(ctx: click.Context, containers: tuple[str, ...]) -> None:
    """Unmount containers."""
    store = open_store(ctx)
    for ref in containers:
        c = _containers().umount(store, ref)
        click.echo(c.name)


@click.command("rm", context_settings=_SETTINGS)
@click.option("-f", "--force", is_flag=True, help="Unmount a mounted container first.")
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def rm_cmd(ctx: click.Context, force: bool, containers: tuple[str, ...]) -> None:
    """Remove containers (and their pending changes)."""
    store = open_store(ctx)
    for ref in containers:
        _containers().remove(store, ref, force=force)
        click.echo(ref)


@click.command("status", context_settings=_SETTINGS)
@click.option("--json", "as_json", is_flag=True, help="Print the changes as JSON.")
@click.option("-w", "--watch", is_flag=True, help="Keep running; print changes as they happen.")
@click.argument("container", required=False)
@click.pass_context
def status_cmd(ctx: click.Context, as_json: bool, watch: bool, container: str | None) -> None:
    """Show a container's changes against its base layer (A added, C changed, D deleted)."""
    show_status(open_store(ctx), container, as_json, watch)


class _CommitCommand(click.Command):
    """`commit ... CONTAINER [REPO[:TAG]] -- PATH...`: what follows `--` is paths."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            i = args.index("--")
            ctx.meta["commit_paths"] = tuple(args[i + 1:])
            args = args[:i]
        return super().parse_args(ctx, args)


@click.command("commit", cls=_CommitCommand, context_settings=_SETTINGS)
@click.option("-m", "--message", default="", help="Commit message.")
@click.option("-a", "--author", help='Author (e.g. "Jane <jane@example.com>").')
@click.option("-c", "--change", "changes", multiple=True,
              help="Apply a Dockerfile instruction (CMD, ENV, ...) to the image config.")
@click.option("--allow-empty", is_flag=True, help="Commit even when nothing changed.")
@click.option("--patch", is_flag=True, help="Choose the hunks to commit (git add -p style).")
@click.option("-q", "--quiet", is_flag=True, help="Print only the layer id.")
@click.argument("container")
@click.argument("repository", required=False)
@click.pass_context
def commit_cmd(ctx: click.Context, message: str, author: str | None, changes: tuple[str, ...],
               allow_empty: bool, patch: bool, quiet: bool, container: str,
               repository: str | None) -> None:
    """Commit a container's changes (or only those under -- PATH..., or the hunks
    chosen with --patch) as a new layer."""
    loop.commit(open_store(ctx), container, repository, message=message, author=author,
                changes=changes, allow_empty=allow_empty, patch=patch, quiet=quiet,
                paths=ctx.meta.get("commit_paths", ()))


@click.command("restore", context_settings=_SETTINGS)
@click.argument("container")
@click.argument("paths", nargs=-1, required=True)
@click.pass_context
def restore_cmd(ctx: click.Context, container: str, paths: tuple[str, ...]) -> None:
    """Discard a container's pending changes at and under PATHS."""
    store = open_store(ctx)
    discarded = _containers().restore(store, container, list(paths))
    if not discarded:
        click.echo("nothing to restore: no pending changes there", err=True)
    for ch in discarded:
        click.echo(f"restored {path_text(ch.path)}")


@click.command("reset", context_settings=_SETTINGS)
@click.argument("container")
@click.argument("layer", required=False)
@click.pass_context
def reset_cmd(ctx: click.Context, container: str, layer: str | None) -> None:
    """Move a container to LAYER (default: its base) and discard all pending changes."""
    store = open_store(ctx)
    c, target = _containers().reset(store, container, layer)
    click.echo(f"container {c.name} is now at {target[:12]}")


# -- used by `layerctl diff` and `layerctl inspect` ---------------------------------------


def container_diff(ctx: click.Context, name: str, paths: tuple[str, ...], patch: bool) -> bool:
    """Print a container's pending changes (with -p as patches); False if `name` is not a
    container."""
    from layerctl.containers.state import find
    from layerctl.containers.worktree import normalize_paths, pending, select

    store = open_store(ctx)
    c = find(store, name)
    if c is None:
        return False
    p = pending(store, c)
    changes = p.changes
    if paths:
        wanted = normalize_paths(paths)
        changes = [ch for ch in select(changes, wanted)
                   if any(ch.path == w or ch.path.startswith(w + b"/") or not w for w in wanted)]
    for ch in changes:
        if not patch:
            details = ch.details()
            suffix = f" ({', '.join(details)})" if details else ""
            click.echo(f"{ch.status} {path_text(ch.path)}{suffix}")
            continue
        for line in patch_lines(store, p, ch):
            click.echo(line)
    return True


def container_package_trees(store: Store, pkgs: object, name: str) -> tuple | None:
    """(base tree, container tree) for `diff --packages CONTAINER`; None if `name` is
    not a container."""
    from layerctl.containers.state import find
    from layerctl.containers.worktree import pending
    from layerctl.insight.packages import pending_trees

    c = find(store, name)
    return None if c is None else pending_trees(pkgs, pending(store, c))


def patch_lines(store: Store, p: object, ch: object) -> list[str]:
    """A git-style patch for one pending change; new content is read (bounded) from
    the container, from the very entry the scan saw (one swapped in since is refused,
    not shown as this change)."""
    from layerctl.containers.hunks import reader
    from layerctl.patch import render_patch

    return render_patch(ch, store, reader(p, ch))
