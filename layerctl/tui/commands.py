"""Every action of the UI in the command palette (ctrl+p)."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

# (title, help, screen action or "app.action") — run against the screen the palette
# was opened on; SCREEN_ACTIONS add what the other screens offer.
ACTIONS: list[tuple[str, str, str]] = [
    ("Commit", "Commit the staged (or all) changes as a new layer", "commit"),
    ("Stage or unstage the change", "Toggle the highlighted change in Changes", "stage"),
    ("Stage all changes", "Stage (or unstage) every pending change", "stage_all"),
    ("Discard the change", "Restore the highlighted change's path from the base", "discard"),
    ("Commit some hunks of the change", "Choose the hunks of the highlighted text file",
     "stage_hunks"),
    ("Reset container to the selected layer", "Drop all changes, move the base", "reset_to_layer"),
    ("Toggle content / diff preview", "Show file content or its diff", "toggle_diff"),
    ("Files: this layer only / all files", "Aggregated or this layer's changes", "files_toggle"),
    ("Files: filter added", "Show or hide added entries", "files_kind('A')"),
    ("Files: filter changed", "Show or hide changed entries", "files_kind('C')"),
    ("Files: filter deleted", "Show or hide deleted entries", "files_kind('D')"),
    ("Files: sort by name / size", "Toggle the sort order", "files_sort"),
    ("Files: search by name", "Find entries whose name contains a text", "files_search"),
    ("Files: blame the highlighted path", "Every layer that added, changed or deleted it",
     "blame"),
    ("Waste", "Wasted space: efficiency, reclaimable bytes, inefficient paths", "waste"),
    ("Edit history (rebase -i)", "Reorder, reword, squash, fixup or drop layers",
     "edit_history"),
    ("Refresh", "Reload the stack and rescan the changes", "refresh"),
    ("Log", "Layer history with per-layer stat", "app.show_log"),
    ("Images", "List, tag and remove images", "app.show_images"),
    ("Containers", "Create, remove and reset containers", "app.show_containers"),
    ("Help", "Keys and what the panes show", "app.show_help"),
    ("Quit", "Leave layerctl", "app.quit"),
]
SCREEN_ACTIONS: dict[str, list[tuple[str, str, str]]] = {
    "ImagesScreen": [
        ("Images: open", "Show the highlighted image", "open"),
        ("Images: tag", "Give the highlighted image another name:tag", "tag"),
        ("Images: new container", "Create a container from the image", "create"),
        ("Images: remove tag", "Remove the highlighted tag (asks first)", "remove"),
    ],
    "WasteScreen": [
        ("Waste: go to layer and path", "Select the culprit layer and the path", "jump"),
        ("Waste: sort by size", "Most wasted first (again: reversed)", "sort('size')"),
        ("Waste: sort by path", "By path name (again: reversed)", "sort('path')"),
        ("Waste: sort by class", "By class of waste (again: reversed)", "sort('class')"),
    ],
    "HunkScreen": [
        ("Hunks: take or leave", "Toggle the highlighted hunk", "toggle"),
        ("Hunks: commit", "Commit the hunks taken (ctrl+s)", "commit"),
    ],
    "RebaseScreen": [
        ("Rebase: run the todo list", "Apply the edited history (ctrl+s)", "run"),
    ],
    "BlameScreen": [
        ("Blame: go to layer", "Select the highlighted event's layer", "jump"),
    ],
    "ContainersScreen": [
        ("Containers: open", "Show the highlighted container", "open"),
        ("Containers: create", "Create a container from an image", "create"),
        ("Containers: remove", "Remove the highlighted container (asks first)", "remove"),
        ("Containers: reset to a layer", "Drop its changes, move its base", "reset"),
    ],
}
MAIN_ONLY = {action for _, _, action in ACTIONS if not action.startswith("app.")}


class LayerctlCommands(Provider):
    def _commands(self) -> list[tuple[str, str, str]]:
        name = type(self.screen).__name__
        main = name == "MainScreen"
        out = [a for a in ACTIONS if main or a[2] not in MAIN_ONLY]
        out.extend(SCREEN_ACTIONS.get(name, []))
        for name in sorted(getattr(self.app, "theme_files", {})):
            out.append((f"Theme: {name}", "Switch theme (remembered)",
                        f"app.switch_theme('{name}')"))
        return out

    async def _run(self, action: str) -> None:
        if action.startswith("app."):
            await self.app.run_action(action[4:])
        else:  # the screen the palette was opened on, not the palette itself
            await self.app.run_action(action, self.screen)

    async def discover(self) -> Hits:
        for title, help_text, action in self._commands():
            yield DiscoveryHit(title, partial(self._run, action), help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, action in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), partial(self._run, action),
                          help=help_text)
