"""Who is committing: -a, else LAYERCTL_AUTHOR, else git's user.name/user.email."""

from __future__ import annotations

import os
import re
from typing import TypeAlias

from layerctl.errors import BadInput

_AUTHOR_RE = re.compile(r"^\s*(?P<name>[^<>]*?)\s*<(?P<email>[^<>]*)>\s*$")


def parse_author(text: str) -> str:
    """Docker's `Name <email>` or a bare name -> git's `Name <email>` (email may be empty)."""
    if "\n" in text or "\0" in text:
        raise BadInput(f"invalid author {text!r}: no newlines or NUL bytes")
    m = _AUTHOR_RE.match(text)
    if m:
        return f"{m['name']} <{m['email']}>"
    if "<" in text or ">" in text:
        raise BadInput(f"invalid author {text!r}: use 'Name <email>' or a bare name")
    name = text.strip()
    if not name:
        raise BadInput("author is empty")
    return f"{name} <>"




def default_author() -> str:
    env = os.environ.get("LAYERCTL_AUTHOR")
    if env:
        return parse_author(env)
    try:
        found = _git_user()
        if found is None:  # a config this reader leaves to dulwich (~10 ms to import)
            found = _dulwich_git_user()
        name, email = found
        if name is None:
            return "layerctl <>"
        return f"{name.decode()} <{(email or b'').decode()}>"
    except (OSError, UnicodeDecodeError, ValueError):
        return "layerctl <>"


_User: TypeAlias = "tuple[bytes | None, bytes | None]"
_ESCAPES = {b"\\": b"\\", b'"': b'"', b"n": b"\n", b"t": b"\t", b"b": b"\b"}
_NAME = re.compile(rb"[A-Za-z0-9-]+")
_SUBSECTION = re.compile(rb'[A-Za-z0-9-]+ ".*"')


def _config_paths() -> list[str]:
    """git's (and dulwich's StackedConfig's) files, the first that sets a key wins."""
    paths = []
    if "GIT_CONFIG_GLOBAL" in os.environ:
        paths.append(os.environ["GIT_CONFIG_GLOBAL"])
    else:
        xdg = os.environ.get("XDG_CONFIG_HOME", os.path.expanduser("~/.config/"))
        paths += [os.path.expanduser("~/.gitconfig"), os.path.join(xdg, "git", "config")]
    if "GIT_CONFIG_SYSTEM" in os.environ:
        paths.append(os.environ["GIT_CONFIG_SYSTEM"])
    elif "GIT_CONFIG_NOSYSTEM" not in os.environ:
        paths.append("/etc/gitconfig")
    return paths


def _git_user() -> _User | None:
    """user.name and user.email from git's config files, or None for a file with
    what this small reader does not follow (includes, continued lines, unusual
    escapes or headers)."""
    name: bytes | None = None
    email: bytes | None = None
    for path in _config_paths():
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            continue
        found = _user_section(data)
        if found is None:
            return None
        name = name if name is not None else found[0]
        email = email if email is not None else found[1]
    return name, email


def _user_section(data: bytes) -> _User | None:
    if b"include" in data.lower():
        return None
    values: dict[bytes, bytes] = {}
    in_user = False
    for raw in data.splitlines():
        line = raw.strip()
        if not line or line[:1] in b"#;":
            continue
        if line.endswith(b"\\"):
            return None  # continued on the next line
        if line.startswith(b"["):
            end = line.find(b"]")
            rest = line[end + 1:].strip() if end > 0 else b"x"
            header = line[1:end]
            if rest[:1] not in (b"", b"#", b";"):
                return None
            if _NAME.fullmatch(header):
                in_user = header.lower() == b"user"
            elif _SUBSECTION.fullmatch(header):
                in_user = False
            else:
                return None
            continue
        if not in_user:
            continue
        key, eq, raw_value = line.partition(b"=")
        key = key.strip().lower()
        if key not in (b"name", b"email"):
            continue
        value = _value(raw_value) if eq else None
        if value is None:
            return None
        values[key] = value
    return values.get(b"name"), values.get(b"email")


def _value(raw: bytes) -> bytes | None:
    """A value as git reads it: quotes kept out, `#`/`;` outside them start a comment,
    whitespace outside them trimmed at the ends; None for what is left to dulwich."""
    out = bytearray()
    spaces = bytearray()  # outside quotes: kept only if more of the value follows
    quoted = False
    i = 0
    raw = raw.strip()
    while i < len(raw):
        c = raw[i:i + 1]
        i += 1
        if c == b"\\":
            escaped = _ESCAPES.get(raw[i:i + 1])
            if escaped is None:
                return None
            out += spaces + escaped
            spaces.clear()
            i += 1
        elif c == b'"':
            quoted = not quoted
        elif c in (b"#", b";") and not quoted:
            break
        elif c in (b" ", b"\t") and not quoted:
            spaces += c
        else:
            out += spaces + c
            spaces.clear()
    return None if quoted else bytes(out)


def _dulwich_git_user() -> _User:
    from dulwich.config import StackedConfig

    config = StackedConfig.default()
    found: list[bytes | None] = []
    for key in (b"name", b"email"):
        try:
            found.append(config.get((b"user",), key))
        except KeyError:
            found.append(None)
    return found[0], found[1]


def author_or_default(author: str | None) -> str:
    return parse_author(author) if author else default_author()
