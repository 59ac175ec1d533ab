"""`layerctl tui` and `layerctl demo`: open the terminal UI."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from layerctl.cli.common import open_store
from layerctl.errors import NotFound

if TYPE_CHECKING:
    from layerctl.store.repo import Store

_SETTINGS = {"help_option_names": ["-h", "--help"]}


def _target(store: Store, name: str | None) -> tuple[str | None, str | None]:
    """(container, image) to open: a container by name/id, else an image or layer
    reference; with no name, the newest container, else the first image."""
    from layerctl.containers.state import find, list_containers
    from layerctl.images import list_images
    from layerctl.images import resolve as resolve_layer

    if name:
        c = find(store, name)
        if c is not None:
            return c.name, None
        resolve_layer(store, name)  # raises NotFound / InvalidName with a clear message
        return None, name
    containers = sorted(list_containers(store), key=lambda c: c.created)
    if containers:
        return containers[-1].name, None
    images = list_images(store)
    return None, (str(images[0][0]) if images else None)


def _run(store: Store, container: str | None, image: str | None, theme: str | None) -> None:
    from layerctl.tui.app import LayerctlApp

    app = LayerctlApp(store, container=container, image=image, theme=theme)
    if theme and theme not in app.available_themes:
        names = ", ".join(sorted(app.theme_files)) or "none found"
        raise NotFound(f"no such theme: {theme} (themes: {names})")
    app.run()


@click.command("tui", context_settings=_SETTINGS)
@click.argument("target", required=False)
@click.option("--theme", help="Theme name (themes/NAME.toml, or a Textual theme).")
@click.pass_context
def tui_cmd(ctx: click.Context, target: str | None, theme: str | None) -> None:
    """Open the terminal UI on a CONTAINER or IMAGE (default: the newest container)."""
    store = open_store(ctx)
    container, image = _target(store, target)
    _run(store, container, image, theme)


@click.command("demo", context_settings=_SETTINGS)
@click.option("--no-ui", is_flag=True, help="Build the sample and exit.")
@click.option("--theme", help="Theme name.")
@click.pass_context
def demo_cmd(ctx: click.Context, no_ui: bool, theme: str | None) -> None:
    """Build a sample three-layer image and a container with a pending change, then
    open the UI on it. Offline; use --root DIR for a throwaway store."""
    from layerctl import demo

    store = open_store(ctx)
    result = demo.build(store)
    if result.notice:
        click.echo(f"layerctl: {result.notice}", err=True)
    click.echo(f"image {result.image}: layers "
               + " ".join(layer[:12] for layer in result.layers), err=True)
    click.echo(f"container {result.container} (one pending change)", err=True)
    if not no_ui:
        _run(store, result.container, None, theme)
