"""Container commands: create, ps, mount, umount, rm, status, commit, restore, reset,
and the container side of `diff` and `inspect`."""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING

import click

from layerctl.cli.common import ago, open_store, path_text, table
from layerctl.errors import BadInput, NotFound

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
    store = open_store(ctx)
    c, notice = _containers().create(store, image, name=name, driver=driver)
    if notice:
        click.echo(f"layerctl: {notice}", err=True)
    click.echo(c.id)


PS_HEADERS = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND",
              "CreatedAt": "CREATED AT", "RunningFor": "CREATED", "Ports": "PORTS",
              "State": "STATE", "Status": "STATUS", "Size": "SIZE", "Names": "NAMES",
              "Labels": "LABELS", "Mounts": "MOUNTS", "Networks": "NETWORKS",
              "LocalVolumes": "LOCAL VOLUMES"}


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
    from layerctl.containers.state import broken

    store = open_store(ctx)
    containers = _containers()
    rows = []
    for c in containers.list_containers(store):
        mounted = containers.is_mounted(store, c)
        if not (show_all or mounted or broken(c)):  # a broken one needs the user's rm
            continue
        if quiet:
            click.echo(c.id if no_trunc else c.short_id)
            continue
        rows.append(_ps_row(store, c, mounted, no_trunc))
    if quiet:
        return
    if fmt:
        from layerctl.cli.images import print_formatted

        print_formatted(fmt, [r for r, _ in rows], PS_HEADERS, "*formatter.ContainerContext",
                        "table {{.ID}}\\t{{.Image}}\\t{{.Command}}\\t{{.RunningFor}}"
                        "\\t{{.Status}}\\t{{.Ports}}\\t{{.Names}}")
        return
    table([[r["ID"], r["Image"], base, r["RunningFor"], r["Status"], driver, r["Names"]]
           for r, (base, driver) in rows],
          ["CONTAINER ID", "IMAGE", "BASE LAYER", "CREATED", "STATUS", "DRIVER", "NAMES"])


def _ps_row(
    store: Store, c: object, mounted: bool, no_trunc: bool
) -> tuple[dict, tuple[str, str]]:
    """Docker's ps --format fields for one container (plus layerctl's driver and base
    layer for the default table, which the template does not see)."""
    from layerctl import runtime
    from layerctl.containers.state import broken
    from layerctl.store.layers import read_layer
    from layerctl.words import go_time

    base = store.ref(c.ref) or ""
    config = {}
    if base:
        try:
            config = read_layer(store, base).config.get("config") or {}
        except Exception:  # noqa: BLE001 - a broken base shows as Broken in STATUS
            config = {}
    argv = (config.get("Entrypoint") or []) + (config.get("Cmd") or [])
    command = " ".join(argv)
    if not no_trunc and len(command) > 20:  # Docker: 20 characters, then an ellipsis
        command = command[:19] + "…"
    state = "dead" if broken(c) else runtime.status(store, c.id)[0]
    labels = config.get("Labels") or {}
    row = {
        "ID": c.id if no_trunc else c.short_id,
        "Image": c.image,
        "Command": f'"{command}"',
        "CreatedAt": go_time(c.created),
        "RunningFor": ago(c.created),
        "Ports": "",  # layerctl containers have no network namespace to publish
        "State": state if state in ("running", "exited", "dead") else "created",
        "Status": _state_text(store, c, mounted),
        "Size": "N/A",
        "Names": c.name,
        "Labels": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
        "Label": lambda key: labels.get(key, ""),
        "Mounts": "",
        "Networks": "",
        "LocalVolumes": "0",
    }
    return row, (base[:12], c.driver)


def _state_text(store: Store, c: object, mounted: bool) -> str:
    """Docker's STATUS words: Up, Exited (N), else whether the filesystem is mounted."""
    from layerctl import runtime
    from layerctl.containers.state import broken

    why = broken(c)
    if why:
        return f"Broken: {why} (rm it)"
    state, code = runtime.status(store, c.id)
    if state == "running":
        return "Up"
    if state == "exited":
        return f"Exited ({code})" if code is not None else "Exited"
    return "Mounted" if mounted else "Created"


@click.command("mount", context_settings=_SETTINGS)
@click.argument("container")
@click.pass_context
def mount_cmd(ctx: click.Context, container: str) -> None:
    """Mount a container's filesystem and print the merged dir."""
    click.echo(_containers().mount(open_store(ctx), container))


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


def _default_container(store: Store, ref: str | None) -> str:
    if ref:
        return ref
    found = _containers().list_containers(store)
    if len(found) == 1:
        return found[0].id
    if not found:
        raise NotFound("no containers; create one with `layerctl create IMAGE`")
    raise BadInput(f"{len(found)} containers exist; name one (see `layerctl ps -a`)")


_KIND = {"C": 0, "A": 1, "D": 2}


def _json_path(path: bytes) -> str:
    """JSON escapes control characters itself: the path as it is (bytes that are not
    UTF-8 as \\xNN), not quoted for a terminal."""
    return "/" + path.decode("utf-8", "backslashreplace")


def _change_json(ch: object) -> dict:
    return {"Path": _json_path(ch.path), "Kind": _KIND[ch.status], "Status": ch.status,
            "Details": ch.details()}


@click.command("status", context_settings=_SETTINGS)
@click.option("--json", "as_json", is_flag=True, help="Print the changes as JSON.")
@click.option("-w", "--watch", is_flag=True, help="Keep running; print changes as they happen.")
@click.argument("container", required=False)
@click.pass_context
def status_cmd(ctx: click.Context, as_json: bool, watch: bool, container: str | None) -> None:
    """Show a container's changes against its base layer (A added, C changed, D deleted)."""
    store = open_store(ctx)
    containers = _containers()
    if not as_json and os.path.exists(store.path("rebase", "state.json")):
        from layerctl.rewrite import progress_line  # only while a rebase is under way

        click.echo(progress_line(store))
    ref = _default_container(store, container)
    changes = containers.status(store, ref)
    if as_json and not watch:
        click.echo(json.dumps([_change_json(ch) for ch in changes], indent=2))
        return
    for ch in changes:
        click.echo(f"{ch.status} {path_text(ch.path)}")
    if not watch:
        return
    sys.stdout.flush()  # a pipe reader sees the starting state before any update
    from layerctl.containers.watch import ChangeWatcher

    def show(updates: list[tuple[bytes, object]]) -> None:
        for path, ch in updates:
            if as_json:
                item = _change_json(ch) if ch else {"Path": _json_path(path), "Status": "clean"}
                click.echo(json.dumps(item))
            else:
                click.echo(f"{ch.status} {path_text(path)}" if ch else f"  {path_text(path)} "
                           "(no longer changed)")
        sys.stdout.flush()

    watcher = ChangeWatcher(store, containers.resolve(store, ref), show, initial=changes)
    try:
        watcher.run_forever()
    except KeyboardInterrupt:
        pass
    finally:
        watcher.stop()


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
    store = open_store(ctx)
    paths = ctx.meta.get("commit_paths", ())
    if patch and paths:
        raise BadInput("--patch and -- PATH... cannot be combined")
    choose = None
    if patch:
        from layerctl.cli.undo import choose_hunks as choose
    result = _containers().commit(
        store, container, message=message, author=author, instructions=list(changes),
        tag=repository, paths=paths, allow_empty=allow_empty, choose=choose,
    )
    if quiet:
        click.echo(result.layer_id)
        return
    n = len(result.changes)
    extra = f", {result.remaining} still pending" if result.remaining else ""
    click.echo(f"[{result.layer_id[:12]}] {n} change{'s' if n != 1 else ''}{extra}", err=True)
    click.echo(result.layer_id)


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
    from layerctl.packages import pending_trees

    c = find(store, name)
    return None if c is None else pending_trees(pkgs, pending(store, c))


def patch_lines(store: Store, p: object, ch: object) -> list[str]:
    """A git-style patch for one pending change; new content is read (bounded) from
    the container, from the very entry the scan saw (one swapped in since is refused,
    not shown as this change)."""
    from layerctl.containers.hunks import reader
    from layerctl.patch import render_patch

    return render_patch(ch, store, reader(p, ch))
