"""The commit dialog: summary, description, author, optional name:tag, the paths going
in. Ctrl+S commits (in a worker, with a progress bar), Esc cancels; an error stays
in the dialog with everything typed kept."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, ProgressBar, Static, TextArea

from layerctl.errors import LayerctlError
from layerctl.patch import path_text
from layerctl.store.diff import Change
from layerctl.tui.format import human_size
from layerctl.tui.workers import WorkerCalls

SHOWN_PATHS = 200  # the list shows this many; the commit takes them all


def check_tag(text: str) -> str | None:
    """The error for an invalid image name, or None."""
    if not text.strip():
        return None
    from layerctl.images import parse_name

    try:
        parse_name(text.strip())
    except LayerctlError as e:
        return str(e)
    return None


def check_author(text: str) -> str | None:
    from layerctl.identity import parse_author

    try:
        parse_author(text)
    except LayerctlError as e:
        return str(e)
    return None


class CommitDialog(WorkerCalls, ModalScreen):
    """Dismissed with the core's CommitResult, or None when cancelled."""

    DEFAULT_CSS = """
    CommitDialog {
        align: center middle;
        background: $background 60%;
    }
    CommitDialog > Vertical {
        width: 96;
        max-width: 95%;
        height: auto;
        max-height: 95%;
        border: thick $primary;
        border-title-style: bold;
        background: $surface;
        padding: 0 1;
    }
    CommitDialog Label {
        margin-top: 1;
        color: $text-muted;
    }
    CommitDialog #description {
        height: 5;
    }
    CommitDialog #paths {
        height: auto;
        max-height: 8;
        border: round $panel-lighten-2;
        padding: 0 1;
    }
    CommitDialog #paths-box {
        height: auto;
        max-height: 8;
    }
    CommitDialog #commit-error {
        height: auto;
        color: $error;
        text-style: bold;
    }
    CommitDialog #tag-error {
        height: auto;
        color: $error;
    }
    CommitDialog ProgressBar {
        display: none;
    }
    CommitDialog.-busy ProgressBar {
        display: block;
    }
    CommitDialog .buttons {
        height: auto;
        align-horizontal: right;
    }
    CommitDialog Button {
        margin-left: 2;
    }
    """
    BINDINGS = [
        Binding("ctrl+s", "commit", "Commit", priority=True),
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self, container: str, changes: list[Change], everything: bool,
                 author: str) -> None:
        super().__init__()
        self.container = container
        self.changes = changes
        self.everything = everything  # nothing staged: the commit takes all changes
        self.author = author
        self.busy = False

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = f"Commit container {self.container}"
            yield Label("Summary")
            yield Input(placeholder="one line: what this layer does", id="summary")
            yield Label("Description (optional)")
            yield TextArea(id="description", soft_wrap=True, show_line_numbers=False)
            with Horizontal(id="who"):
                with Vertical():
                    yield Label("Author")
                    yield Input(self.author, id="author")
                with Vertical():
                    yield Label("Image name:tag (optional)")
                    yield Input(placeholder="e.g. myapp:1.0", id="tag")
            yield Static("", id="tag-error")
            yield Label(self._paths_heading())
            yield Static(self._paths_text(), id="paths")
            yield Static("", id="commit-error")
            yield ProgressBar(total=None, show_eta=False, id="progress")
            with Horizontal(classes="buttons"):
                yield Button("Cancel (esc)", id="cancel")
                yield Button("Commit (ctrl+s)", id="commit", variant="primary")

    def _paths_heading(self) -> str:
        n = len(self.changes)
        size = sum(ch.new.size for ch in self.changes if ch.new is not None and ch.new.kind == "-")
        scope = "all pending changes" if self.everything else "staged changes"
        return f"Going in: {n} {scope}, {human_size(size)}"

    def _paths_text(self) -> str:
        lines = [f"{ch.status} {path_text(ch.path)}" for ch in self.changes[:SHOWN_PATHS]]
        if len(self.changes) > SHOWN_PATHS:
            lines.append(f"… and {len(self.changes) - SHOWN_PATHS} more")
        return "\n".join(lines) or "(none)"

    def on_mount(self) -> None:
        self.query_one("#summary", Input).focus()
        # The Vertical's own height is auto; Horizontal rows need one.
        self.query_one("#who").styles.height = "auto"
        for v in self.query("#who > Vertical"):
            v.styles.height = "auto"

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "tag":
            self.query_one("#tag-error", Static).update(check_tag(event.value) or "")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "commit":
            self.action_commit()
        else:
            self.action_cancel()

    def action_cancel(self) -> None:
        if self.busy:
            self.notify("The commit is running; it cannot be stopped halfway.",
                        severity="warning")
            return
        self.dismiss(None)

    def _error(self, text: str) -> None:
        self.query_one("#commit-error", Static).update(text)

    def action_commit(self) -> None:
        if self.busy:
            return
        summary = self.query_one("#summary", Input).value.strip()
        description = self.query_one("#description", TextArea).text.strip()
        author = self.query_one("#author", Input).value.strip()
        tag = self.query_one("#tag", Input).value.strip()
        if not summary:
            self._error("The summary is empty: say in one line what this layer does.")
            self.query_one("#summary", Input).focus()
            return
        problem = check_tag(tag) or (check_author(author) if author else None)
        if problem:
            self._error(problem)
            return
        message = summary + (f"\n\n{description}" if description else "")
        paths = [] if self.everything else [path_text(ch.path) for ch in self.changes]
        self._error("")
        self._set_busy(True)
        self._run(message, author or None, tag or None, paths)

    def _set_busy(self, busy: bool) -> None:
        self.busy = busy
        self.set_class(busy, "-busy")
        for widget in self.query("Input, TextArea, Button"):
            widget.disabled = busy

    @work(thread=True, exclusive=True, group="commit")
    def _run(self, message: str, author: str | None, tag: str | None, paths: list[str]) -> None:
        from layerctl.containers import api

        try:
            with self.app.store_lock:
                result = api.commit(self.app.store, self.container, message=message,
                                    author=author, tag=tag, paths=paths)
        except (LayerctlError, OSError) as e:
            self._ui(self._failed, str(e))
            return
        self._ui(self.dismiss, result)

    def _failed(self, text: str) -> None:
        self._set_busy(False)
        self._error(f"Commit failed: {text}")
