"""The help screen (`?`): what each pane shows and every key."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

HELP = """\
# layerctl

A container is a writable layer on top of an image's read-only layers.
Here you see the **Layers** of the stack (the container's *pending* layer on
top), the **Changes** waiting to be committed, the **Files** of the selected
layer (each marked **A**dded, **C**hanged or **D**eleted against the layer
below) and a **Preview** of the highlighted file.

| Where | Key | What it does |
|---|---|---|
| anywhere | `tab` / `shift+tab` | move between panes |
| anywhere | `c` | commit the staged changes (all, if none are staged) |
| anywhere | `v` | preview: file content or its diff |
| anywhere | `l` / `i` / `o` | log, images, containers |
| anywhere | `w` | waste: efficiency, reclaimable bytes, inefficient paths |
| anywhere | `E` | edit history (rebase -i): reorder, reword, squash, fixup, drop layers |
| anywhere | `r` | refresh |
| anywhere | `ctrl+p` | command palette: every action, themes |
| anywhere | `?` / `q` | this help / quit |
| Layers | `R` | reset the container to the highlighted layer |
| Changes | `space` | stage or unstage the change |
| Changes | `a` | stage (or unstage) all |
| Changes | `d` | discard the change (asks first) |
| Changes | `h` | commit some hunks of the highlighted text file |
| Hunks | `space` / `ctrl+s` / `esc` | take or leave the hunk / commit / cancel |
| Files | `enter` / `space` | open or close a directory |
| Files | `t` | this layer's changes only / all files |
| Files | `1` `2` `3` | show or hide added, changed, deleted |
| Files | `s` | sort by name or size |
| Files | `/` | search names; `esc` clears |
| Files | `b` | blame: every layer that added, changed or deleted the path |
| Waste | `s` `p` `k` | sort by size, path, class (again: reversed) |
| Waste | `enter` | select the layer that wasted the path, and the path |
| Blame | `enter` | select the event's layer (and the path) |
| Edit history | `ctrl+s` / `esc` | run the todo list / cancel |
| Commit dialog | `ctrl+s` / `esc` | commit / cancel |
| Images | `enter` `t` `n` `x` | open, tag, new container, remove tag |
| Containers | `enter` `n` `x` `R` | open, create, remove, reset |

Themes live in `themes/` (copy one to `~/.config/layerctl/themes/` to make
your own); pick one with `--theme NAME` or from the palette.
"""


class HelpScreen(ModalScreen):
    DEFAULT_CSS = """
    HelpScreen {
        align: center middle;
        background: $background 60%;
    }
    HelpScreen > VerticalScroll {
        width: 90;
        max-width: 95%;
        height: 90%;
        border: thick $primary;
        background: $surface;
    }
    """
    BINDINGS = [
        Binding("escape", "dismiss", "Close"),
        Binding("question_mark", "dismiss", "Close", show=False),
        Binding("q", "dismiss", "Close", show=False),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Markdown(HELP)

    def action_dismiss(self) -> None:
        self.dismiss(None)
