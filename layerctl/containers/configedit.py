"""`commit --change`: Dockerfile instructions that edit the image config.

Supported, as `docker commit -c` does: CMD, ENTRYPOINT, ENV, WORKDIR, USER,
EXPOSE, LABEL, VOLUME (JSON form and shell form where Docker accepts it).
"""

from __future__ import annotations

import copy
import json
import posixpath
import shlex
from typing import Any

from layerctl.errors import BadInput

INSTRUCTIONS = ("CMD", "ENTRYPOINT", "ENV", "WORKDIR", "USER", "EXPOSE", "LABEL", "VOLUME")


def _json_list(text: str) -> list[str] | None:
    text = text.strip()
    if not text.startswith("["):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return None
    return value


def _key_values(instr: str, text: str) -> list[tuple[str, str]]:
    """ENV/LABEL arguments: `k=v k2="v 2"` or the legacy `k v with spaces`."""
    try:
        words = shlex.split(text, posix=True)
    except ValueError as e:
        raise BadInput(f"{instr} {text}: {e}") from None
    if not words:
        raise BadInput(f"{instr} needs at least one argument")
    if "=" not in words[0]:
        parts = text.strip().split(None, 1)
        if len(parts) < 2:
            raise BadInput(f"{instr} {text}: expected KEY=VALUE or KEY VALUE")
        return [(parts[0], parts[1].strip())]
    out = []
    for w in words:
        key, eq, value = w.partition("=")
        if not eq or not key:
            raise BadInput(f"{instr} {text}: {w!r} is not KEY=VALUE")
        out.append((key, value))
    return out


def apply_change(config: dict[str, Any], change: str) -> None:
    """Apply one instruction to an OCI image config dict (in place)."""
    instr, _, rest = change.strip().partition(" ")
    if not instr:
        raise BadInput("empty --change instruction")
    upper = instr.upper()
    rest = rest.strip()
    if upper not in INSTRUCTIONS:
        raise BadInput(
            f"{instr} is not a valid change instruction; use one of {', '.join(INSTRUCTIONS)}"
        )
    cfg = config.setdefault("config", {})
    if upper in ("CMD", "ENTRYPOINT"):
        value = _json_list(rest)
        if value is None:
            if not rest:
                raise BadInput(f"{upper} needs an argument")
            value = ["/bin/sh", "-c", rest]
        cfg["Cmd" if upper == "CMD" else "Entrypoint"] = value
        if upper == "ENTRYPOINT":
            cfg.pop("Cmd", None)  # Docker resets CMD when ENTRYPOINT is set
    elif upper == "ENV":
        env = list(cfg.get("Env") or [])
        for key, text in _key_values(upper, rest):
            env = [e for e in env if e.split("=", 1)[0] != key] + [f"{key}={text}"]
        cfg["Env"] = env
    elif upper == "LABEL":
        labels = dict(cfg.get("Labels") or {})
        labels.update(_key_values(upper, rest))
        cfg["Labels"] = labels
    elif upper == "WORKDIR":
        if not rest:
            raise BadInput("WORKDIR needs a path")
        cfg["WorkingDir"] = posixpath.join(cfg.get("WorkingDir") or "/", rest)
    elif upper == "USER":
        if not rest or len(rest.split()) != 1:
            raise BadInput("USER needs exactly one argument: user[:group]")
        cfg["User"] = rest
    elif upper == "EXPOSE":
        ports = dict(cfg.get("ExposedPorts") or {})
        for word in rest.split():
            port, _, proto = word.partition("/")
            if not port.replace("-", "").isdigit() or proto not in ("", "tcp", "udp", "sctp"):
                raise BadInput(f"EXPOSE {word}: expected PORT[/tcp|udp|sctp]")
            ports[f"{port}/{proto or 'tcp'}"] = {}
        if not ports:
            raise BadInput("EXPOSE needs at least one port")
        cfg["ExposedPorts"] = ports
    elif upper == "VOLUME":
        paths = _json_list(rest)
        if paths is None:
            paths = rest.split()
        if not paths:
            raise BadInput("VOLUME needs at least one path")
        volumes = dict(cfg.get("Volumes") or {})
        volumes.update({p: {} for p in paths})
        cfg["Volumes"] = volumes


def apply_changes(config: dict[str, Any], changes: list[str]) -> dict[str, Any]:
    out = copy.deepcopy(config)
    out.setdefault("config", {})
    for change in changes:
        apply_change(out, change)
    return out
