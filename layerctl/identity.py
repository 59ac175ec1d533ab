"""Who is committing: -a, else LAYERCTL_AUTHOR, else git's user.name/user.email."""

from __future__ import annotations

import os
import re

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
        from dulwich.config import StackedConfig

        config = StackedConfig.default()
        name = config.get((b"user",), b"name").decode()
        try:
            email = config.get((b"user",), b"email").decode()
        except KeyError:
            email = ""
        return f"{name} <{email}>"
    except (KeyError, OSError, UnicodeDecodeError):
        return "layerctl <>"


def author_or_default(author: str | None) -> str:
    return parse_author(author) if author else default_author()
