"""`layerctl load`: images in from a docker-archive or an OCI layout (dir or tar)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from layerctl.changeset.apply import DEFAULT_LIMITS, Limits
from layerctl.errors import BadInput
from layerctl.oci.archive.docker import is_docker_archive, read_docker_archive
from layerctl.oci.archive.fs import ArchiveFS, open_archive
from layerctl.oci.archive.layout import is_oci_layout, read_oci_layout
from layerctl.oci.ingest import LayerEvent, LoadedImage, ingest
from layerctl.oci.model import SourceImage

if TYPE_CHECKING:
    from layerctl.store.repo import Store


def read_images(fs: ArchiveFS) -> tuple[str, list[SourceImage]]:
    """(format, images) of an archive: "docker-archive" when it has a manifest.json
    (Docker 25 archives hold an OCI layout too), else "oci"."""
    if is_docker_archive(fs):
        return "docker-archive", read_docker_archive(fs)
    if is_oci_layout(fs):
        return "oci", read_oci_layout(fs)
    if fs.exists("repositories"):
        raise BadInput(f"{fs.label}: a docker-archive without manifest.json (Docker < 1.10) "
                       "is not supported")
    raise BadInput(f"{fs.label}: not a docker-archive or OCI layout "
                   "(no manifest.json or index.json)")


def load(
    store: Store,
    source: str,
    progress: Callable[[LayerEvent], None] | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> list[LoadedImage]:
    """Load every image of `source` (a tar, plain or compressed; a layout directory;
    `-` for stdin), all or nothing."""
    fs = open_archive(source, spool_dir=store.path())
    try:
        _kind, images = read_images(fs)
        return ingest(store, images, lambda blob: fs.open(blob.source), label=fs.label,
                      progress=progress, limits=limits)
    finally:
        fs.close()
