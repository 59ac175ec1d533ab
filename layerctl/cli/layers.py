"""Layer commands: log, show, diff, checkout, fsck."""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING

import click

from layerctl.cli.common import echo_package_warnings, open_store
from layerctl.errors import BadInput, Corrupt, LayerctlError, NotFound

if TYPE_CHECKING:
    from layerctl.store.repo import Store


def _tags_by_layer(store: Store) -> dict[str, list[str]]:
    from layerctl.images import list_images

    tags: dict[str, list[str]] = {}
    for name, sha in list_images(store):
        tags.setdefault(sha, []).append(str(name))
    return tags


def _changes(store: Store, layer: object) -> list:
    from layerctl.store.diff import diff
    from layerctl.store.layers import read_layer

    parent = read_layer(store, layer.parent).root if layer.parent else None
    return list(diff(store, parent, layer.root))


def _echo_changes(store: Store, changes: list, stat: bool, patch: bool,
                  packages: list | None = None) -> None:
    from layerctl.patch import render_patch, stat_summary

    if stat:
        lines, summary = stat_summary(changes)
        for line in lines:
            click.echo(" " + line)
        click.echo(" " + summary)
        if packages:
            from layerctl.insight.packages import summary_line

            click.echo(" " + summary_line(packages))
    if patch:
        for change in changes:
            for line in render_patch(change, store):
                click.echo(line)


def _date(layer: object) -> str:
    return time.strftime(
        "%a %b %d %H:%M:%S %Y ", time.gmtime(layer.author_time + layer.author_tz)
    ) + (
        f"{'+' if layer.author_tz >= 0 else '-'}{abs(layer.author_tz) // 3600:02d}"
        f"{abs(layer.author_tz) % 3600 // 60:02d}"
    )


def _echo_layer(
    store: Store, layer: object, tags: dict, oneline: bool, stat: bool, patch: bool,
    pkgs: object = None,
) -> None:
    decoration = f" ({', '.join(tags[layer.id])})" if layer.id in tags else ""
    if oneline:
        click.echo(f"{layer.id[:12]}{decoration} {layer.summary}")
    else:
        click.secho(f"layer {layer.id}{decoration}", fg="yellow")
        click.echo(f"Author: {layer.author_name}")
        click.echo(f"Date:   {_date(layer)}")
        if layer.diff_id:
            click.echo(f"DiffID: {layer.diff_id}")
        click.echo("")
        for line in (layer.message or "(no message)").splitlines():
            click.echo(f"    {line}")
        click.echo("")
    if stat or patch:
        packages = pkgs.of_layer(layer) if stat and pkgs is not None else None
        _echo_changes(store, _changes(store, layer), stat, patch, packages)
        if not oneline:
            click.echo("")


class _LogCommand(click.Command):
    """`log [IMAGE] [--] PATH...`: what follows `--` are paths, as in git."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            cut = args.index("--")
            ctx.meta["log_paths"] = args[cut + 1 :]
            args = args[:cut]
        return super().parse_args(ctx, args)


@click.command("log", cls=_LogCommand)
@click.argument("image", required=False)
@click.option("--oneline", is_flag=True, help="One line per layer.")
@click.option("--stat", is_flag=True, help="List the paths each layer changes.")
@click.option("-p", "--patch", is_flag=True, help="Show each layer's changes as patches.")
@click.option(
    "-n", "--max-count", type=click.IntRange(min=0), default=None, help="At most N layers."
)
@click.pass_context
def log_cmd(
    ctx: click.Context,
    image: str | None,
    oneline: bool,
    stat: bool,
    patch: bool,
    max_count: int | None,
) -> None:
    """Show the layer history of IMAGE (default: of every image), newest first;
    with `-- PATH...` only the layers that changed something at or under a PATH."""
    from layerctl.images import list_images, resolve
    from layerctl.store.layers import read_layer

    store = open_store(ctx)
    touches = _path_filter(store, ctx.meta.get("log_paths"))
    tips = [resolve(store, image)] if image else [sha for _, sha in list_images(store)]
    seen: set[str] = set()
    pending = {}
    for sha in tips:
        try:
            pending[sha] = read_layer(store, sha)
        except LayerctlError as e:
            if image or isinstance(e, Corrupt):
                raise  # a damaged store is the one thing to say (fsck finds the rest)
            # one broken tag must not hide the history of the others (fsck names it)
            click.echo(f"layerctl: warning: skipping {sha[:12]}: {e}", err=True)
    tags = _tags_by_layer(store)
    pkgs = None
    if stat:
        from layerctl.insight.packages import Packages

        pkgs = Packages(store)
    shown = 0
    while pending and (max_count is None or shown < max_count):
        layer = max(pending.values(), key=lambda la: (la.author_time, la.id))
        del pending[layer.id]
        seen.add(layer.id)
        parent = None
        if layer.parent:
            parent = pending.get(layer.parent) or read_layer(store, layer.parent)
        if touches is None or touches(layer, parent):
            _echo_layer(store, layer, tags, oneline, stat, patch, pkgs)
            shown += 1
        if parent is not None and parent.id not in seen:
            pending[parent.id] = parent
    echo_package_warnings(pkgs)


def _path_filter(store: Store, paths: list[str] | None):  # noqa: ANN202
    """None, or a test "did this layer change anything at or under one of `paths`"
    (the per-layer path lookup blame uses)."""
    if paths is None:
        return None
    if not paths:
        raise click.UsageError("log -- needs at least one path")
    from layerctl.insight.blame import PathLookup, parse_path, touched

    lookup = PathLookup(store)
    wanted = [(parse_path(p), {}) for p in paths]
    return lambda layer, parent: any(
        touched(lookup, layer, parent, parts, cache) for parts, cache in wanted
    )


def _split_layer_path(store: Store, text: str) -> tuple[str, bytes | None]:
    """'LAYER' or 'LAYER:PATH' (LAYER may itself be name:tag)."""
    from layerctl.images import resolve

    try:
        return resolve(store, text), None
    except LayerctlError:
        pass
    for i in range(len(text) - 1, 0, -1):
        if text[i] != ":":
            continue
        try:
            return resolve(store, text[:i]), os.fsencode(text[i + 1 :])
        except LayerctlError:
            continue
    return resolve(store, text), None


@click.command("show")
@click.argument("target")
@click.option("-p", "--patch", is_flag=True, help="Show the changes as patches.")
@click.pass_context
def show_cmd(ctx: click.Context, target: str, patch: bool) -> None:
    """Show LAYER and its changes, or the content of LAYER:PATH."""
    from layerctl.store.fstree import DirRef, lookup_follow
    from layerctl.store.layers import read_layer
    from layerctl.words import path_text

    store = open_store(ctx)
    layer_id, path = _split_layer_path(store, target)
    layer = read_layer(store, layer_id)
    if path is None:
        from layerctl.insight.packages import Packages

        pkgs = Packages(store)
        _echo_layer(store, layer, _tags_by_layer(store), False, True, patch, pkgs)
        echo_package_warnings(pkgs)
        return
    found = lookup_follow(store, layer.root, path)
    if found is None:
        raise NotFound(
            f"no such path in layer {layer_id[:12]}: {path_text(path.lstrip(b'/'))}"
        )
    meta, obj = found
    if isinstance(obj, DirRef):
        from layerctl.store.fstree import read_dir
        from layerctl.words import quote_name

        d = read_dir(store, obj)
        for name in d.names():
            suffix = "/" if name in d.dirs else ""
            click.echo(quote_name(name) + suffix)
        return
    if meta.kind not in ("-", "l"):
        raise LayerctlError(
            f"{path_text(path.lstrip(b'/'))} is a special file ({meta.format()})"
        )
    from layerctl.store.blobstream import iter_blob

    sys.stdout.flush()
    for piece in iter_blob(store, obj):  # in pieces: a layer may hold a multi-GiB file
        sys.stdout.buffer.write(piece)
    sys.stdout.buffer.flush()


@click.command("diff")
@click.argument("args", nargs=-1, required=True)
@click.option("-p", "--patch", is_flag=True, help="Show text patches.")
@click.option("--name-status", is_flag=True, help="Only A/C/D and path (like docker diff).")
@click.option("--packages", is_flag=True,
              help="Only the dpkg/apk/rpm packages added, removed or changed.")
@click.option("--json", "as_json", is_flag=True, help="With --packages: as JSON.")
@click.pass_context
def diff_cmd(ctx: click.Context, args: tuple[str, ...], patch: bool, name_status: bool,
             packages: bool, as_json: bool) -> None:
    """diff LAYER LAYER [-p], or diff CONTAINER [PATH...] [-p]; --packages names the
    packages (read from the package databases in the trees) instead of paths."""
    if as_json and not packages:
        raise click.UsageError("--json goes with --packages")
    try:
        from layerctl.cli.containers import container_diff
    except ImportError:
        container_diff = None
    if packages:
        _diff_packages(ctx, args, as_json, container_diff is not None)
        return
    if container_diff is not None and container_diff(ctx, args[0], args[1:], patch):
        return
    from layerctl.images import resolve
    from layerctl.patch import detail_line, render_patch, status_line
    from layerctl.store.diff import diff
    from layerctl.store.layers import read_layer

    if len(args) != 2:
        raise click.UsageError("diff takes two layers (or a container and optional paths)")
    store = open_store(ctx)
    old = read_layer(store, resolve(store, args[0]))
    new = read_layer(store, resolve(store, args[1]))
    for change in diff(store, old.root, new.root):
        if patch:
            for line in render_patch(change, store):
                click.echo(line)
        else:
            click.echo(status_line(change) if name_status else detail_line(change))


def _diff_packages(ctx: click.Context, args: tuple[str, ...], as_json: bool,
                   containers: bool) -> None:
    import json

    from layerctl.images import resolve
    from layerctl.insight.packages import Packages
    from layerctl.store.layers import read_layer

    store = open_store(ctx)
    pkgs = Packages(store)
    pair = None
    if len(args) == 1 and containers:
        from layerctl.cli.containers import container_package_trees

        pair = container_package_trees(store, pkgs, args[0])
    if pair is None:
        if len(args) != 2:
            raise click.UsageError("diff --packages takes two layers or a container")
        ids = [resolve(store, a) for a in args]
        pair = tuple(pkgs.tree(read_layer(store, i).root, i[:12]) for i in ids)
    changes = pkgs.changes(*pair)
    if as_json:
        click.echo(json.dumps([c.as_json() for c in changes], indent=2))
    else:
        for c in changes:
            click.echo(c.text())
    echo_package_warnings(pkgs)


@click.command("checkout")
@click.argument("layer")
@click.argument("directory", type=click.Path(file_okay=False))
@click.pass_context
def checkout_cmd(ctx: click.Context, layer: str, directory: str) -> None:
    """Write LAYER's full filesystem, with all metadata, into an empty DIRECTORY."""
    from layerctl.images import resolve
    from layerctl.store.checkout import checkout
    from layerctl.store.layers import read_layer

    if not directory:
        raise BadInput("checkout needs a target directory (got an empty path)")
    store = open_store(ctx)
    root = read_layer(store, resolve(store, layer)).root
    if os.path.exists(directory) and (not os.path.isdir(directory) or os.listdir(directory)):
        raise LayerctlError(f"{directory} is not an empty directory")
    checkout(store, root, directory)  # makes the directory, and removes it if refused


@click.command("fsck")
@click.pass_context
def fsck_cmd(ctx: click.Context) -> None:
    """Verify every reachable object and metadata record."""
    from layerctl.containers.state import broken, clean_all_debris, list_containers
    from layerctl.fsck import fsck, stale_diff_ids
    from layerctl.store import debris

    store = open_store(ctx)
    for path in debris.clear(store.root) + clean_all_debris(store):
        click.echo(f"removed debris of a killed process: {os.path.relpath(path, store.root)}")
    for c in list_containers(store):
        why = broken(c)
        if why:  # the user's to remove: rm tells its state from a live one's
            click.echo(f"note: container {c.name} is broken ({why}); remove it with "
                       f"`layerctl rm {c.short_id}`")
    problems, count = fsck(store)
    for line in problems:
        click.echo(line)
    if problems:
        raise LayerctlError(f"fsck found {len(problems)} problem(s)")
    stale = stale_diff_ids(store)
    for line in stale:
        click.echo(f"note: {line}")
    if stale:
        click.echo(f"note: save and push send these layers with their changeset's DiffID "
                   f"(the image ID differs from the recorded one for {len(stale)} layer(s))")
    click.echo(f"ok: {count} objects checked")
