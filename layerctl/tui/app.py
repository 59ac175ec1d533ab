"""The layerctl terminal UI: a thin front over the same core API as the CLI."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from textual.app import App
from textual.theme import Theme

from layerctl.tui import settings
from layerctl.tui.commands import LayerctlCommands
from layerctl.tui.screens.main import MainScreen

if TYPE_CHECKING:
    from layerctl.store.repo import Store


class LayerctlApp(App):
    TITLE = "layerctl"
    CSS_PATH = settings.stylesheets() or None
    COMMANDS = App.COMMANDS | {LayerctlCommands}
    ENABLE_COMMAND_PALETTE = True

    def __init__(
        self,
        store: Store,
        container: str | None = None,
        image: str | None = None,
        theme: str | None = None,
        clock: Callable[[], float] = time.time,
        debounce: float = 0.1,
        remember_theme: bool = True,
        id_aliases: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.store = store
        self.store_lock = threading.RLock()  # one store, many worker threads
        self.container = container
        self.image = image
        self.clock = clock  # ages are measured against it (fixed in snapshot tests)
        self.debounce = debounce
        self.id_aliases = id_aliases or {}  # tests: stable names for layer ids in snapshots
        self.remember_theme = remember_theme
        self._remember = False  # only a switch made while running is saved
        self.theme_files = settings.discover_themes()
        for tf in self.theme_files.values():
            self.register_theme(_theme_of(tf))
        wanted = theme or settings.load_config().get("theme") or settings.DEFAULT_THEME
        self._start_theme = wanted if wanted in self.available_themes else (
            settings.DEFAULT_THEME if settings.DEFAULT_THEME in self.available_themes
            else "textual-dark")
        self.theme = self._start_theme
        self._theme_class(self._start_theme)

    def short_id(self, layer_id: str) -> str:
        return self.id_aliases.get(layer_id) or layer_id[:12]

    def get_default_screen(self) -> MainScreen:
        return MainScreen(self.container, self.image)

    def on_mount(self) -> None:
        self._remember = self.remember_theme

    def watch_theme(self, name: str) -> None:
        self._theme_class(name)
        if getattr(self, "_remember", False):
            settings.save_config({"theme": name})

    def _theme_class(self, name: str) -> None:
        for cls in [c for c in self.classes if c.startswith("theme-")]:
            self.remove_class(cls)
        self.add_class(f"theme-{name}")

    # -- navigation (bound from several screens and the palette) --------------------

    def open_target(self, container: str | None = None, image: str | None = None) -> None:
        """Show the main screen on another container or image."""
        self.container, self.image = container, image
        while len(self.screen_stack) > 1:
            self.pop_screen()
        self.switch_screen(MainScreen(container, image))

    def action_show_log(self) -> None:
        from layerctl.tui.screens.log import LogScreen

        main = self._main()
        top = main.stack.selected_layer() if main else None
        self.push_screen(LogScreen(self.container, self.image, top))

    def action_show_images(self) -> None:
        from layerctl.tui.screens.images import ImagesScreen

        self.push_screen(ImagesScreen())

    def action_show_containers(self) -> None:
        from layerctl.tui.screens.containers import ContainersScreen

        self.push_screen(ContainersScreen())

    def action_show_help(self) -> None:
        from layerctl.tui.screens.help import HelpScreen

        self.push_screen(HelpScreen())

    def action_switch_theme(self, name: str) -> None:
        self.theme = name

    def _main(self) -> MainScreen | None:
        for screen in reversed(self.screen_stack):
            if isinstance(screen, MainScreen):
                return screen
        return None

    def back_to_main(self) -> None:
        """Close the current screen after it changed the store; the main screen reloads."""
        main = self._main()
        self.pop_screen()
        if main is not None:
            main.reload()


def _theme_of(tf: settings.ThemeFile) -> Theme:
    fields = {k: v for k, v in tf.fields.items() if k in _THEME_FIELDS}
    return Theme(name=tf.name, variables=dict(tf.variables), **fields)


_THEME_FIELDS = {"primary", "secondary", "warning", "error", "success", "accent", "foreground",
                 "background", "surface", "panel", "boost", "dark", "luminosity_spread",
                 "text_alpha"}
