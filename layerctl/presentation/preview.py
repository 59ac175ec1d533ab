"""What a preview pane shows for one entry, in words the fronts print as they are: the
Preview record, a file's text head (cut at PREVIEW_BYTES, never mid-character), a
word for binary data and a line for an entry's metadata. Used by browse's browsers;
no store access here."""

from __future__ import annotations

from dataclasses import dataclass

from layerctl.patch import is_binary
from layerctl.store.meta import KIND_NAMES, Meta
from layerctl.words import human_size, path_text, quote_name

PREVIEW_BYTES = 256 * 1024  # beyond this a preview shows the head only: the UI stays fast


@dataclass(frozen=True)
class Preview:
    """What a preview pane shows: `kind` is text, diff, binary, directory or info;
    `text` is ready to show (`syntax_hint` names the file for a highlighter)."""

    kind: str
    title: str
    text: str
    syntax_hint: str = ""
    truncated: bool = False


def file_preview(title: str, data: bytes, meta: Meta, syntax_hint: str) -> Preview:
    """A regular file's preview from its first PREVIEW_BYTES + 1 bytes (the one more
    tells whether it was cut): its text head, or binary described in words."""
    if is_binary(data[:PREVIEW_BYTES]) and not cut_utf8(data):
        return Preview("binary", title, f"binary file, {human_size(meta.size)}"
                       f" ({sniff(data)}), {describe_meta(meta)}")
    text, truncated = text_head(data)
    return Preview("text", title, text, syntax_hint=syntax_hint, truncated=truncated)


def describe_meta(meta: Meta) -> str:
    """'character device 1,3, mode 0666, owner 0:0' and the like."""
    words = [KIND_NAMES[meta.kind]]
    if meta.rdev is not None:
        words[0] += f" {meta.rdev[0]},{meta.rdev[1]}"
    words.append(f"mode {meta.mode:04o}")
    words.append(f"owner {meta.uid}:{meta.gid}")
    if meta.xattrs:
        words.append("xattrs " + ", ".join(quote_name(k) for k, _ in meta.xattrs))
    if meta.link is not None:
        words.append("hardlink to " + path_text(meta.link))
    return ", ".join(words)


_MAGIC = (
    (b"\x7fELF", "ELF executable or library"),
    (b"\x1f\x8b", "gzip data"),
    (b"PK\x03\x04", "zip archive"),
    (b"\x89PNG", "PNG image"),
    (b"\xff\xd8\xff", "JPEG image"),
    (b"GIF8", "GIF image"),
    (b"BZh", "bzip2 data"),
    (b"\xfd7zXZ", "xz data"),
    (b"\x28\xb5\x2f\xfd", "zstd data"),
    (b"%PDF", "PDF document"),
)


def sniff(data: bytes) -> str:
    """A word for what binary data is, from its first bytes."""
    for magic, word in _MAGIC:
        if data.startswith(magic):
            return word
    if len(data) > 262 and data[257:262] == b"ustar":
        return "tar archive"
    return "data"


def cut_utf8(data: bytes) -> bool:
    """True when `data` is text cut mid-character at PREVIEW_BYTES (not really binary)."""
    if len(data) <= PREVIEW_BYTES or b"\0" in data[:PREVIEW_BYTES]:
        return False
    try:
        data[:PREVIEW_BYTES].decode("utf-8")
        return True
    except UnicodeDecodeError as e:
        return e.start >= PREVIEW_BYTES - 4


def text_head(data: bytes, max_lines: int = 5000) -> tuple[str, bool]:
    truncated = len(data) > PREVIEW_BYTES
    text = data[:PREVIEW_BYTES].decode("utf-8", "replace")
    lines = text.splitlines()
    if len(lines) > max_lines:
        lines, truncated = lines[:max_lines], True
    return "\n".join(lines), truncated
