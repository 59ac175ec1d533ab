"""Who is committing: -a, else LAYERCTL_AUTHOR, else git's user.name/user.email."""

from __future__ import annotations

import os

from layerctl.store.layers import parse_author


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
