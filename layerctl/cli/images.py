"""Image commands: import, images, tag, rmi, inspect, history."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

import click

from layerctl.cli.common import ago, human_size, open_store, progress_printer, table
from layerctl.cli.views import print_formatted, show_images
from layerctl.errors import BadInput, NotFound
from layerctl.words import rfc3339, rfc3339_nano

if TYPE_CHECKING:
    from layerctl.store.repo import Store


@click.command("import")
@click.argument("source")
@click.argument("name")
@click.option("-m", "--message", default="", help="Commit message for the layer.")
@click.option("-a", "--author", default=None, help='Author, "Name <email>" or a bare name.')
@click.pass_context
def import_cmd(
    ctx: click.Context, source: str, name: str, message: str, author: str | None
) -> None:
    """Import SOURCE (a directory or a tar, plain/gzip/zstd, '-' for stdin) as NAME[:TAG]."""
    from layerctl.identity import author_or_default
    from layerctl.images import parse_name

    image = parse_name(name)
    who = author_or_default(author)
    store = open_store(ctx)
    progress = progress_printer("Importing")
    if source != "-" and not os.path.exists(source):
        raise NotFound(f"{source}: no such file or directory")
    if source != "-" and os.path.isdir(source):
        from layerctl.importer import import_directory

        layer_id = import_directory(store, source, image, who, message, progress)
    else:
        if source != "-" and not os.access(source, os.R_OK):
            raise BadInput(f"{source}: permission denied")
        from layerctl.importer import import_tar

        layer_id = import_tar(store, source, image, who, message, progress)
    click.echo(layer_id)


def format_option(f):  # noqa: ANN001, ANN201 - a click decorator
    return click.option("--format", "fmt", metavar="TEMPLATE",
                        help="Go-template output like Docker's: '{{.ID}}', "
                        "'table {{.Repository}}\\t{{.Size}}', '{{json .}}'.")(f)


@click.command("images")
@click.option("-q", "--quiet", is_flag=True, help="Only image IDs.")
@click.option("--no-trunc", is_flag=True, help="Do not truncate output.")
@format_option
@click.pass_context
def images_cmd(ctx: click.Context, quiet: bool, no_trunc: bool, fmt: str | None) -> None:
    """List images (REPOSITORY, TAG, IMAGE ID, CREATED, SIZE)."""
    show_images(open_store(ctx), quiet, no_trunc, fmt)


@click.command("tag")
@click.argument("source")
@click.argument("target")
@click.pass_context
def tag_cmd(ctx: click.Context, source: str, target: str) -> None:
    """Point TARGET (NAME[:TAG]) at the layer SOURCE names."""
    from layerctl.images import parse_name, resolve, set_tag

    name = parse_name(target)
    store = open_store(ctx)
    set_tag(store, name, resolve(store, source))


@click.command("rmi")
@click.argument("names", nargs=-1, required=True)
@click.option("-f", "--force", is_flag=True, help="Untag even if a container uses it.")
@click.pass_context
def rmi_cmd(ctx: click.Context, names: tuple[str, ...], force: bool) -> None:
    """Remove image tags (the layers stay while anything else uses them)."""
    from layerctl.containers.layerdirs import chain_ids
    from layerctl.containers.state import remove_images
    from layerctl.images import parse_name
    from layerctl.prune import prune_cache

    store = open_store(ctx)
    freed: set[str] = set()
    for name, layer_id in remove_images(store, [parse_name(t) for t in names], force):
        click.echo(f"Untagged: {name}")
        click.echo(f"Deleted: {layer_id}")
        freed.update(chain_ids(store, layer_id))
    prune_cache(store, only=freed)  # the layer dirs nothing else uses any more


@click.command("inspect")
@click.argument("targets", nargs=-1, required=True)
@click.option("-f", "--format", "fmt", metavar="TEMPLATE",
              help="Go-template per object like Docker's: '{{.Config.Env}}', '{{json .RootFS}}'.")
@click.pass_context
def inspect_cmd(ctx: click.Context, targets: tuple[str, ...], fmt: str | None) -> None:
    """Show images, layers or containers as JSON (Docker's keys where they apply)."""
    store = open_store(ctx)
    out = []
    for target in targets:
        data = _inspect_container(store, target)
        if data is None:
            data = inspect_image(store, target)
        out.append(data)
    if fmt and fmt.strip() != "json":  # Docker: `json` is the default document
        from layerctl.presentation.gotemplate import format_rows

        # Docker applies the template to the inspect document itself (a JSON map)
        click.echo(format_rows(fmt, out, {}), nl=False)
        return
    click.echo(json.dumps(out, indent=4, ensure_ascii=False))


def _inspect_container(store: Store, target: str) -> dict | None:
    try:
        from layerctl.containers import inspect_container
    except ImportError:
        return None
    return inspect_container(store, target)


def inspect_image(store: object, target: str) -> dict:
    from layerctl.containers.layerstack import graph_driver
    from layerctl.images import chain, image_id, image_size, list_images, oci_config, resolve

    layer_id = resolve(store, target)
    layers = chain(store, layer_id)
    top = layers[-1]
    config = oci_config(layers)
    parent_id = image_id(layers[:-1]) if len(layers) > 1 else ""
    return {
        "Id": image_id(layers, store),
        "RepoTags": [str(n) for n, sha in list_images(store) if sha == layer_id],
        "Parent": parent_id,
        "Comment": top.message,
        "Created": rfc3339_nano(top.author_time * 1_000_000_000),
        "Author": top.author_name,
        "Config": config.get("config", {}),
        "Architecture": config.get("architecture"),
        "Os": config.get("os"),
        "Size": image_size(store, layers),
        "GraphDriver": graph_driver(store, layer_id),
        "RootFS": {"Type": "layers", "Layers": [layer.sent_diff_id for layer in layers]},
        "Layerctl": {
            "Layer": top.id,
            "Layers": [layer.id for layer in layers],
            "Store": store.root,
        },
    }


@click.command("history")
@click.argument("image")
@click.option("--no-trunc", is_flag=True, help="Do not truncate output.")
@click.option("-q", "--quiet", is_flag=True, help="Only layer IDs.")
@format_option
@click.pass_context
def history_cmd(
    ctx: click.Context, image: str, no_trunc: bool, quiet: bool, fmt: str | None
) -> None:
    """Show an image's layers (IMAGE, CREATED, CREATED BY, SIZE, COMMENT)."""
    from layerctl.images import chain, layer_sizes, resolve

    store = open_store(ctx)
    layers = chain(store, resolve(store, image))
    rows = []
    sizes = layer_sizes(store, layers)
    for layer, size in zip(reversed(layers), reversed(sizes), strict=True):
        created_by = layer.created_by
        comment = layer.summary
        if not no_trunc:
            created_by = created_by if len(created_by) <= 45 else created_by[:44] + "…"
            comment = comment if len(comment) <= 40 else comment[:39] + "…"
        rows.append({
            "ID": layer.id if no_trunc else layer.id[:12],
            "CreatedSince": ago(layer.author_time),
            "CreatedAt": rfc3339(layer.author_time),
            "CreatedBy": created_by,
            "Size": human_size(size),
            "Comment": comment,
        })
    if quiet:
        for row in rows:
            click.echo(row["ID"])
        return
    if fmt:
        print_formatted(fmt, rows, HISTORY_HEADERS, "*formatter.historyContext",
                        "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}"
                        "\t{{.Comment}}")
        return
    table([[r["ID"], r["CreatedSince"], r["CreatedBy"], r["Size"], r["Comment"]] for r in rows],
          ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"])


HISTORY_HEADERS = {"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT",
                   "CreatedBy": "CREATED BY", "Size": "SIZE", "Comment": "COMMENT"}
