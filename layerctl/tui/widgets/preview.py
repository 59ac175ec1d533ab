"""The Preview pane: a file's content (syntax highlighted) or its diff against the
layer below, as layerctl.presentation.browse prepared it."""

from __future__ import annotations

from rich.syntax import Syntax
from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from layerctl.presentation.preview import Preview

HIGHLIGHT_LINES = 2000  # past this, plain text: highlighting would stall the UI thread


def lexer_for(p: Preview) -> str:
    """A Pygments lexer name for a preview, from its file name, else its first line
    (a #! line); call it in a worker: the first call imports Pygments' lexer table."""
    if p.kind == "diff":
        return "diff"
    if p.kind != "text":
        return "text"
    from pygments.lexers import get_lexer_for_filename, guess_lexer
    from pygments.util import ClassNotFound

    try:
        return get_lexer_for_filename(p.syntax_hint, p.text[:4096]).aliases[0]
    except ClassNotFound:
        pass
    if p.text.startswith("#!"):
        try:
            return guess_lexer(p.text.split("\n", 1)[0]).aliases[0]
        except ClassNotFound:
            pass
    return "text"


class FilePreview(VerticalScroll):
    def __init__(self) -> None:
        super().__init__(id="preview", classes="pane")
        self.border_title = "Preview"
        self.current: Preview | None = None

    def compose(self):  # noqa: ANN201 - Textual's ComposeResult
        yield Static(Text("Select a file to see it here.", style="italic"), id="preview-body")

    def show_preview(self, preview: Preview | None, mode: str = "content",
                     lexer: str = "text") -> None:
        self.current = preview
        body = self.query_one("#preview-body", Static)
        if preview is None:
            self.border_title = "Preview"
            body.update(Text("Select a file to see it here.", style="italic"))
            return
        # Text, not a str: a str is parsed as markup, and a file name is not markup
        self.border_title = Text(f"Preview · {mode} · {preview.title}")
        self.border_subtitle = "first part only" if preview.truncated else ""
        body.update(self._renderable(preview, lexer))
        self.scroll_home(animate=False)

    def _renderable(self, p: Preview, lexer: str):  # noqa: ANN202 - a Rich renderable
        if p.kind in ("text", "diff") and p.text.count("\n") < HIGHLIGHT_LINES:
            theme = self.app.theme_variables.get("layerctl-syntax") or (
                "monokai" if self.app.current_theme.dark else "default")
            return Syntax(p.text, lexer, theme=theme, line_numbers=p.kind == "text",
                          word_wrap=False, background_color="default")
        if p.kind in ("text", "diff"):
            return Text(p.text)
        return Text(p.text, style="italic")
