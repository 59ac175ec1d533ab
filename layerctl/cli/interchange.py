"""Interchange commands: load, save, export, track."""

from __future__ import annotations

import time

import click

from layerctl.cli.common import human_size, open_store
from layerctl.words import short_digest

_SETTINGS = {"help_option_names": ["-h", "--help"]}


@click.command("load", context_settings=_SETTINGS)
@click.option("-i", "--input", "source", default="-", show_default=True,
              help="Archive to read: a docker-archive or OCI tar (plain, gzip or zstd), "
                   "an OCI layout directory, or - for stdin.")
@click.option("-q", "--quiet", is_flag=True, help="Only the 'Loaded image' lines.")
@click.pass_context
def load_cmd(ctx: click.Context, source: str, quiet: bool) -> None:
    """Load images from a docker-archive or an OCI image layout (like docker load)."""
    from layerctl.cli.loading import load

    load(open_store(ctx), source, quiet)


@click.command("save", context_settings=_SETTINGS)
@click.argument("images", nargs=-1, required=True)
@click.option("-o", "--output", default="-", show_default=True,
              help="File to write (- for stdout), or the directory for --format oci-dir.")
@click.option("--format", "fmt", type=click.Choice(["docker-archive", "oci", "oci-dir"]),
              default="docker-archive", show_default=True,
              help="docker-archive (docker load), oci (an OCI layout in a tar) or oci-dir.")
@click.option("--compress", type=click.Choice(["none", "gzip", "zstd"]), default=None,
              help="Layer compression [default: none for docker-archive, gzip for OCI].")
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
@click.pass_context
def save_cmd(ctx: click.Context, images: tuple[str, ...], output: str, fmt: str,
             compress: str | None, quiet: bool) -> None:
    """Save IMAGES (names or layer ids) with all their layers to an archive."""
    from layerctl.oci.archive.save import save, saved_image_id

    if compress is None:
        compress = "none" if fmt == "docker-archive" else "gzip"
    store = open_store(ctx)

    written = []

    def progress(layer: object, info: object) -> None:
        written.append(info.size)
        if not quiet:
            click.echo(f"Writing layer {short_digest(info.diff_id)} ({human_size(info.size)})",
                       err=True)

    started = time.monotonic()
    saved, blobs = save(store, list(images), output, fmt, compress, progress)
    for layer_id, why in blobs.broken.items():
        click.echo(f"layerctl: warning: layer {layer_id[:12]}: its kept original tar is "
                   f"damaged ({why}); saved its changeset instead (another DiffID; run "
                   "`layerctl fsck`)", err=True)
    if not quiet and written:
        from layerctl.oci.events import throughput

        click.echo(f"Wrote {throughput(sum(written), time.monotonic() - started)}", err=True)
    for layer_id, count in blobs.altered.items():
        click.echo(f"layerctl: warning: layer {layer_id[:12]}: {count} file(s) of its layer "
                   "dir differ from the store (the archive has the stored ones; containers "
                   "on it see the changed files)", err=True)
    for layer_id in blobs.stale:
        click.echo(f"layerctl: warning: layer {layer_id[:12]} records a DiffID that differs "
                   "from its tar's; the archive uses the tar's", err=True)
    if not quiet:
        for image in saved:
            names = ", ".join(str(t) for t in image.tags) or image.top.id[:12]
            short = short_digest(saved_image_id(image, blobs))
            click.echo(f"Saved image {short} ({names})", err=True)


@click.command("export", context_settings=_SETTINGS)
@click.argument("source")
@click.option("-o", "--output", default="-", show_default=True,
              help="Tar file to write, or - for stdout.")
@click.pass_context
def export_cmd(ctx: click.Context, source: str, output: str) -> None:
    """Export the filesystem of a container (with its pending changes) or a layer as a tar."""
    from layerctl.oci.archive.export import export

    export(open_store(ctx), source, output)


@click.command("track", context_settings=_SETTINGS)
@click.argument("container")
@click.option("--name", help="Name of the layerctl container (default: the engine's name).")
@click.pass_context
def track_cmd(ctx: click.Context, container: str, name: str | None) -> None:
    """Track a podman (podman:NAME) or docker (docker:NAME) container's changes in place.

    `layerctl status`, `diff` and `commit` then work on the container's real upper dir.
    """
    from layerctl.oci.engines import track

    c, layer_id = track(open_store(ctx), container, name)
    click.echo(f"layerctl: tracking {container} as container {c.name} on layer {layer_id[:12]}",
               err=True)
    click.echo(c.id)
