"""Reading layer tars: the inverse of layertar.py.

`apply_layer_tar` streams a layer changeset (OCI image-spec layer.md, Docker's
layer format) and `apply_rootfs_tar` a plain root filesystem tar onto a TreeEditor
(importer.import_tar makes the latter a base layer).

Layer tars are untrusted input. Entries become editor entries and blobs in the
caller's PackWriter; a base layer's entries may also be written into its new layer
dir (a DirMirror, confined to that dir), but only once accepted. Every entry that
could not be extracted safely by a real tool is refused with a BadInput naming it,
and the caller aborts the PackWriter (and the mirror), leaving the store as it was.
The rules:

- names are bytes (UTF-8 where valid, any other byte kept via surrogateescape);
  `./` prefixes and empty components are dropped; a `..` component, an
  absolute name (`/x`), a NUL byte, or a name longer than the limit is refused.
  Absolute names are refused rather than made relative: no tool that writes
  layers emits them, and refusing keeps one meaning per name;
- an entry whose parent is a symlink is refused (layers are snapshots: a
  well-formed tar never writes through a symlink), and so is an entry whose
  parent is another non-directory; missing parents are created (0755, root,
  mtime 0) as tar does;
- a later entry for the same path wins: a file replaces a directory with
  everything below it, a directory replaces a file, a directory entry for an
  existing directory only sets its metadata;
- the root directory's own metadata changes only with an explicit `./` entry
  (layerctl's changesets never carry one: diff() starts below the root);
- hardlinks need an existing non-directory target (in this tar, earlier, or in
  the lower tree); members of a hardlink group share the inode's metadata (a
  hardlink entry's own header is ignored, as on disk), and every group
  touched is rewritten in the store's canonical form (see
  snapshot.DirImporter): the first member in walk order has link=None, the
  others link=<first>; a name given a new inode leaves its group;
- whiteouts (`.wh.NAME`, `.wh..wh..opq`) remove entries of the lower tree
  only, never what the same tar adds, whatever the order of the entries;
  other `.wh..wh.*` names (AUFS metadata) are ignored, as Docker does. With
  whiteouts=False (a root filesystem) any `.wh.` name is an error: a real
  file of that name cannot be told apart from a whiteout in this format;
- xattrs in overlayfs's own namespace (`trusted.overlay.*`) are dropped: in a layer
  dir the kernel would act on them (a dir made opaque or redirected, hiding what the
  image holds), and a container never sees them. The stored tree then differs from
  the tar, so tarsplit keeps the tar, and `save` gives it back byte for byte;
- sizes, entry counts, path lengths and depths, and extended header sizes are
  bounded by Limits, and truncated or corrupt data (tar or compressed) is an
  error, not a short layer: a bad header after the first entry is not taken
  for the end of the archive, and the stream is read to its end so that a
  gzip/zstd trailer is checked. A missing end-of-archive marker is accepted.

Modules: this one is the entry points; applier.py the pass that applies a tar (each
rule next to the code it guards), tarentry.py the checks of one entry's name and
metadata, tarread.py the reading of the stream, addedtree.py what the tar added.
"""

from __future__ import annotations

from typing import BinaryIO

from layerctl.changeset.applier import Applier, ApplyStats
from layerctl.changeset.dirmirror import DirMirror
from layerctl.changeset.tarread import DEFAULT_LIMITS, Limits
from layerctl.changeset.tarsplit import TarRecorder
from layerctl.compress.detect import open_decompressed
from layerctl.store.edit import TreeEditor
from layerctl.store.objects import PackWriter

__all__ = [
    "DEFAULT_LIMITS",
    "ApplyStats",
    "DirMirror",
    "Limits",
    "apply_layer_tar",
    "apply_rootfs_tar",
    "open_decompressed",
]


def apply_rootfs_tar(
    editor: TreeEditor, writer: PackWriter, stream: BinaryIO, limits: Limits, keep_bytes: int,
) -> tuple[ApplyStats, dict[bytes, bytes]]:
    """A root filesystem tar (`.wh.` names are plain files) onto `editor`; also returns
    the file contents kept in memory (up to `keep_bytes`) for the DiffID pass."""
    applier = Applier(editor, writer, False, limits, keep_bytes)
    return applier.run(stream), applier.kept


def apply_layer_tar(
    editor: TreeEditor,
    writer: PackWriter,
    stream: BinaryIO,
    *,
    whiteouts: bool = True,
    limits: Limits = DEFAULT_LIMITS,
    recorder: TarRecorder | None = None,
    mirror: DirMirror | None = None,
) -> ApplyStats:
    """Apply the (decompressed) tar `stream` onto `editor`, storing content in `writer`.
    `recorder` (tarsplit), the reader `stream` itself or one it reads through, is told
    which bytes are file contents.

    With whiteouts=True it is a layer changeset (OCI whiteouts apply to what
    `editor` held before); with whiteouts=False a root filesystem, where `.wh.`
    names are errors. Raises BadInput naming the entry for anything unsafe or
    malformed; the caller then aborts `writer`. The editor is left half-applied
    after an error and must be discarded.
    """
    return Applier(editor, writer, whiteouts, limits, recorder=recorder,
                   mirror=mirror).run(stream)
