"""The TUI's settings file and its theme files.

Config: LAYERCTL_CONFIG, else $XDG_CONFIG_HOME/layerctl/config.toml (a flat TOML
table; the TUI keeps `theme` there). Themes: NAME.toml (Textual Theme fields in
[theme], extra CSS variables in [variables]) and *.tcss stylesheets, looked up
in the user's themes dir first, then the themes/ shipped with layerctl.
"""

from __future__ import annotations

import os
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from layerctl.atomic import write_file

DEFAULT_THEME = "dark"


def config_path() -> Path:
    env = os.environ.get("LAYERCTL_CONFIG")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "layerctl" / "config.toml"


def load_config() -> dict:
    try:
        with open(config_path(), "rb") as f:
            return tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError):
        return {}  # a broken or missing config must never stop the UI


def save_config(values: dict) -> None:
    """Merge `values` into the config file (flat scalar keys only)."""
    data = load_config()
    data.update(values)
    lines = ["# layerctl settings (written by `layerctl tui`; safe to edit)"]
    for key, value in sorted(data.items()):
        if isinstance(value, bool):
            lines.append(f"{key} = {'true' if value else 'false'}")
        elif isinstance(value, int | float):
            lines.append(f"{key} = {value}")
        elif isinstance(value, str):
            escaped = value.replace("\\", "\\\\").replace('"', '\\"')
            lines.append(f'{key} = "{escaped}"')
    path = config_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_file(str(path), ("\n".join(lines) + "\n").encode(), durable=False)
    except OSError:
        pass  # remembering the theme is a convenience, not worth an error


def theme_dirs() -> list[Path]:
    """Where theme files are looked for, first match wins."""
    dirs = [config_path().parent / "themes"]
    package = Path(__file__).resolve().parent.parent  # layerctl/
    dirs.append(package.parent / "themes")  # a source checkout or an editable install
    dirs.append(Path(sys.prefix) / "share" / "layerctl" / "themes")  # pip install (data-files)
    return dirs


@dataclass
class ThemeFile:
    name: str
    path: Path
    fields: dict
    variables: dict[str, str] = field(default_factory=dict)


def discover_themes() -> dict[str, ThemeFile]:
    """name -> ThemeFile for every readable NAME.toml (user's override shipped ones)."""
    found: dict[str, ThemeFile] = {}
    for d in reversed(theme_dirs()):
        for path in sorted(d.glob("*.toml")) if d.is_dir() else ():
            try:
                with open(path, "rb") as f:
                    data = tomllib.load(f)
            except (OSError, tomllib.TOMLDecodeError):
                continue
            fields = dict(data.get("theme", {}))
            if "primary" not in fields:
                continue
            variables = {str(k): str(v) for k, v in data.get("variables", {}).items()}
            found[path.stem] = ThemeFile(path.stem, path, fields, variables)
    return found


def stylesheets() -> list[Path]:
    """Every *.tcss, one per file name (the user's copy replaces the shipped one)."""
    chosen: dict[str, Path] = {}
    for d in reversed(theme_dirs()):
        for path in sorted(d.glob("*.tcss")) if d.is_dir() else ():
            chosen[path.name] = path
    # layerctl.tcss first: a theme's own rules can then override it
    return sorted(chosen.values(), key=lambda p: (p.name != "layerctl.tcss", p.name))
