"""`system df`, `system prune`, `container prune` and `image prune`, Docker style."""

from __future__ import annotations

import sys

import click

from layerctl.cli.common import open_store, table
from layerctl.errors import BadInput
from layerctl.words import ago, human_size

_SETTINGS = {"help_option_names": ["-h", "--help"]}


def _pct(part: int, whole: int) -> str:
    return f"{human_size(part)} ({round(100 * part / whole) if whole else 0}%)"


def _confirm(warning: str, force: bool) -> None:
    if force:
        return
    if not sys.stdin.isatty():
        raise BadInput("refusing to prune without confirmation: stdin is not a terminal "
                       "(use -f)")
    click.echo(warning)
    answer = input("Are you sure you want to continue? [y/N] ")
    if answer.strip().lower() not in ("y", "yes"):
        raise SystemExit(0)


def _report(pruned: object) -> None:
    if pruned.containers:
        click.echo("Deleted Containers:")
        for cid in pruned.containers:
            click.echo(cid)
        click.echo()
    if pruned.images or pruned.cache:
        click.echo("Deleted Images:")
        for name in pruned.images:
            click.echo(f"untagged: {name}")
        for kind, lid in pruned.cache:
            click.echo(f"deleted {kind}: {lid}")
        click.echo()
    for note in pruned.notes:
        click.echo(f"layerctl: {note}", err=True)
    click.echo(f"Total reclaimed space: {human_size(pruned.reclaimed)}")


@click.group("system", context_settings=_SETTINGS)
def system_cmd() -> None:
    """Show disk usage and remove what nothing uses."""


@system_cmd.command("df", context_settings=_SETTINGS)
@click.option("-v", "--verbose", is_flag=True, help="Show detailed information on space usage.")
@click.pass_context
def df_cmd(ctx: click.Context, verbose: bool) -> None:
    """Show the store's disk usage (TYPE, TOTAL, ACTIVE, SIZE, RECLAIMABLE)."""
    from layerctl import prune

    u = prune.usage(open_store(ctx))
    c_size = sum(c.size for c in u.containers)
    c_idle = sum(c.size for c in u.containers if not c.active)
    cache_size = sum(c.size for c in u.cache)
    cache_idle = sum(c.size for c in u.cache if not c.used)
    if not verbose:
        table([
            ["Images", str(len(u.images)), str(sum(1 for i in u.images if i.containers)),
             human_size(u.objects_size), _pct(u.images_reclaimable, u.objects_size)],
            ["Containers", str(len(u.containers)), str(sum(1 for c in u.containers if c.active)),
             human_size(c_size), _pct(c_idle, c_size)],
            ["Local Volumes", "0", "0", "0B", "0B"],
            ["Layer cache", str(len(u.cache)), str(sum(1 for c in u.cache if c.used)),
             human_size(cache_size), human_size(cache_idle)],
        ], ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"])
        return
    click.echo(f"Images space usage: {human_size(u.objects_size)} (object store)\n")
    table([[i.name.repository, i.name.tag, i.image_id[7:19], ago(i.created),
            human_size(i.size), human_size(i.shared), human_size(i.size - i.shared),
            str(i.containers)] for i in u.images],
          ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE", "SHARED SIZE", "UNIQUE SIZE",
           "CONTAINERS"])
    click.echo("\nContainers space usage:\n")
    table([[c.container.short_id, c.container.image, human_size(c.size),
            ago(c.container.created), c.active.capitalize() or "Stopped", c.container.name]
           for c in u.containers],
          ["CONTAINER ID", "IMAGE", "SIZE", "CREATED", "STATUS", "NAMES"])
    click.echo("\nLocal Volumes space usage:\n")
    table([], ["VOLUME NAME", "LINKS", "SIZE"])
    click.echo(f"\nLayer cache usage: {human_size(cache_size)}\n")
    table([[c.layer_id[:12], c.kind, human_size(c.size), str(c.used).lower()]
           for c in u.cache], ["CACHE ID", "CACHE TYPE", "SIZE", "IN USE"])


@system_cmd.command("prune", context_settings=_SETTINGS)
@click.option("-a", "--all", "all_images", is_flag=True,
              help="Remove all unused images, not just the layer cache.")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation.")
@click.pass_context
def system_prune_cmd(ctx: click.Context, all_images: bool, force: bool) -> None:
    """Remove stopped containers, unused layer cache (and images, -a) and
    objects no ref reaches."""
    from layerctl import prune

    _confirm("WARNING! This will remove:\n  - all stopped containers\n"
             + ("  - all images without at least one container associated to them\n"
                if all_images else "  - all dangling images\n")
             + "  - unused layer cache\n  - objects no image or container reaches\n", force)
    store = open_store(ctx)
    out = prune.prune_containers(store)
    prune.prune_images(store, all_images, out)
    prune.prune_objects(store, out)
    _report(out)


@click.group("container", context_settings=_SETTINGS)
def container_cmd() -> None:
    """Manage containers."""


@container_cmd.command("prune", context_settings=_SETTINGS)
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation.")
@click.pass_context
def container_prune_cmd(ctx: click.Context, force: bool) -> None:
    """Remove all stopped containers."""
    from layerctl import prune

    _confirm("WARNING! This will remove all stopped containers.", force)
    _report(prune.prune_containers(open_store(ctx)))


@click.group("image", context_settings=_SETTINGS)
def image_cmd() -> None:
    """Manage images."""


@image_cmd.command("prune", context_settings=_SETTINGS)
@click.option("-a", "--all", "all_images", is_flag=True,
              help="Remove all unused images, not just dangling ones (the layer cache).")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation.")
@click.pass_context
def image_prune_cmd(ctx: click.Context, all_images: bool, force: bool) -> None:
    """Remove unused layer cache dirs (dangling images); -a: also untag images no
    container was created from."""
    from layerctl import prune

    _confirm("WARNING! This will remove all images without at least one container "
             "associated to them." if all_images
             else "WARNING! This will remove all dangling images.", force)
    _report(prune.prune_images(open_store(ctx), all_images))
