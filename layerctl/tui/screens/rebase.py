"""Interactive history editing (`rebase -i`) in the UI: the todo list (pick, reword,
edit, squash, fixup, drop; lines reordered) in an editor, run with ctrl+s. Messages
asked for on the way (reword, squash) come up one by one in a prompt."""

from __future__ import annotations

import threading

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Header, Static, TextArea

from layerctl.errors import LayerctlError
from layerctl.tui.screens.dialogs import PromptDialog
from layerctl.tui.workers import WorkerCalls


class RebaseScreen(WorkerCalls, Screen):
    BINDINGS = [
        Binding("ctrl+s", "run", "Run the todo list"),
        Binding("escape", "app.pop_screen", "Cancel"),
    ]

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target  # a container or image name
        self.todo: str | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(f"Edit the history of {self.target}: reorder lines, change the "
                     "command word, ctrl+s to run, escape to cancel.", id="rebase-help")
        yield TextArea("", id="rebase-todo", classes="pane")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "rebase -i"
        self.load()

    @work(thread=True, exclusive=True)
    def load(self) -> None:
        from layerctl.rewrite import todo_text

        try:
            with self.app.store_lock:
                text, _layers, _index = todo_text(self.app.store, self.target, None)
        except LayerctlError as e:
            self._ui(self.notify, str(e), severity="error", markup=False)
            self._ui(self.app.pop_screen)
            return
        self._ui(self._show, text)

    def _show(self, text: str) -> None:
        self.todo = text
        area = self.query_one(TextArea)
        area.text = text
        area.focus()

    def action_run(self) -> None:
        if self.todo is None:
            return
        self._run(self.query_one(TextArea).text)

    def _ask(self, text: str) -> str:
        """A message the sequencer asks for (reword, squash), from the worker thread:
        shown in a prompt on the UI thread; cancel keeps it as it was."""
        answered = threading.Event()
        box: list[str | None] = [None]

        def got(value: str | None) -> None:
            box[0] = value
            answered.set()

        first = next((line for line in text.splitlines() if line and not line.startswith("#")),
                     "")
        self.app.call_from_thread(self.app.push_screen,
                                  PromptDialog("Layer message", value=first), got)
        answered.wait()
        return box[0] if box[0] else text

    @work(thread=True, group="rebase-run")
    def _run(self, todo: str) -> None:
        from layerctl.rewrite import RebaseStopped, interactive

        asked = [False]

        def editor(text: str) -> str:
            if not asked[0]:  # the first call is the todo list itself
                asked[0] = True
                return todo
            return self._ask(text)

        try:
            with self.app.store_lock:
                out = interactive(self.app.store, self.target, None, editor)
        except RebaseStopped as e:  # conflicts or an edit stop: resolved in a container
            self._ui(self.notify, str(e), severity="warning", markup=False, timeout=15)
            self._ui(self.app.back_to_main)
            return
        except (LayerctlError, OSError) as e:
            self._ui(self.notify, str(e), severity="error", markup=False)
            return
        self._ui(self.notify, out.message, markup=False)
        self._ui(self.app.back_to_main)
