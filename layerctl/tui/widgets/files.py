"""The Files pane: the selected layer's filesystem as a lazily expanded tree, each
entry marked against the layer below (dive style), with filters, sort and search.

All listing goes through layerctl.presentation.browse in worker threads; the tree only adds
the nodes it is handed.
"""

from __future__ import annotations

from rich.cells import cell_len
from rich.text import Text
from textual import work
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Input, Tree
from textual.widgets.tree import TreeNode
from textual.worker import get_current_worker

from layerctl.presentation.browse import ALL_KINDS, BY_NAME, BY_SIZE, UNCHANGED, Entry
from layerctl.tui.format import STATUS_WORDS, human_size, status_colour
from layerctl.tui.messages import EntryHighlighted
from layerctl.tui.workers import WorkerCalls

NAME_WIDTH = 34  # name column, less the tree's indent, so the meta columns line up
SEARCH_LIMIT = 2000


class FileTree(WorkerCalls, Tree):
    BINDINGS = [
        Binding("t", "toggle_layer_only", "Layer only/all"),
        Binding("1", "toggle_kind('A')", "Added", show=False),
        Binding("2", "toggle_kind('C')", "Changed", show=False),
        Binding("3", "toggle_kind('D')", "Deleted", show=False),
        Binding("s", "toggle_sort", "Sort"),
        Binding("slash", "search", "Search"),
        Binding("b", "screen.blame", "Blame"),
    ]

    def __init__(self) -> None:
        super().__init__("/", id="files")
        self.show_root = False
        self.guide_depth = 3
        self.browser = None
        self.kinds: set[str] = set(ALL_KINDS)
        self.sort_by = BY_NAME
        self.query_text = ""
        self.label_text = ""
        self._generation = 0
        self._expanded: set[bytes] = set()
        self._cursor_path: bytes | None = None  # kept across reloads (live updates)
        self._target: bytes | None = None  # reveal(): where the cursor goes once loaded
        self._next_target: bytes | None = None  # the same, for the next browse()

    # -- loading ----------------------------------------------------------------

    def browse(self, browser: object, label: str) -> None:
        """Browse `browser` (a presentation.browse browser); expanded dirs stay expanded."""
        same = label == self.label_text
        self.browser = browser
        self.label_text = label
        if not same:
            self._expanded.clear()
            self._cursor_path = None
            self._target = None
        if self._next_target is not None:
            self._target, self._next_target = self._next_target, None
            self._open_to(self._target)
        self.reload()

    def reveal(self, path: bytes, now: bool = True) -> None:
        """Put the cursor on `path`: its parents are opened as they load. With `now`
        false, on the next browse() (a layer selection that is about to land). Filters
        and search are dropped so that the path is listed whatever its status."""
        if now:
            self._target = path
            self._open_to(path)
            self.reload()
        else:
            self._next_target = path

    def _open_to(self, path: bytes) -> None:
        self.kinds = set(ALL_KINDS)
        self.query_text = ""
        if isinstance(self.parent, FilesPane):
            self.parent.hide_search()
        parts = path.split(b"/")
        self._expanded.update(b"/".join(parts[:i]) for i in range(1, len(parts)))

    def reload(self) -> None:
        self._generation += 1
        self.clear()
        self.root.data = None
        self.root.expand()
        self._retitle()
        if self.browser is None:
            return
        if self.query_text:
            self._search(self.query_text, self._generation)
        else:
            self._load(self.root, b"", self._generation)

    @work(thread=True, group="files-load")
    def _load(self, node: TreeNode, path: bytes, generation: int) -> None:
        browser = self.browser
        with self.app.store_lock:
            entries = browser.children(path, self.kinds, self.sort_by)
        if generation != self._generation:
            return
        self._ui(self._fill, node, entries, generation)
        # Directory sizes walk subtrees: fill them in after the names are on screen.
        sizes = {}
        for e in entries:
            if get_current_worker().is_cancelled or generation != self._generation:
                return
            if e.is_dir:
                with self.app.store_lock:
                    sizes[e.path] = browser.size(e)
        if sizes:
            self._ui(self._resize, node, sizes, generation)

    def _fill(self, node: TreeNode, entries: list[Entry], generation: int) -> None:
        if generation != self._generation:
            return
        node.remove_children()
        depth = _level(node)
        for e in entries:
            child = node.add(self._label(e, depth), data=e, allow_expand=e.is_dir)
            if e.is_dir and e.path in self._expanded:
                child.expand()
            if e.path == self._target:
                self._target = None
                self._cursor_path = e.path
                self.call_after_refresh(self.move_cursor, child)
            elif e.path == self._cursor_path and self._target is None:
                self.call_after_refresh(self.move_cursor, child)
        if not entries and node is self.root:
            node.add_leaf(Text("(nothing to show with these filters)", style="italic"))
        if node is self.root and self.cursor_line < 0 and entries:
            self.cursor_line = 0

    def _resize(self, node: TreeNode, sizes: dict[bytes, int], generation: int) -> None:
        if generation != self._generation:
            return
        depth = _level(node)
        for child in node.children:
            e = child.data
            if isinstance(e, Entry) and e.path in sizes:
                child.set_label(self._label(e, depth, sizes[e.path]))

    def _label(self, e: Entry, depth: int, size: int | None = None, full: bool = False) -> Text:
        v = self.app.theme_variables
        colour = status_colour(v, e.status)
        name = e.path_text if full else e.name_text + ("/" if e.is_dir else "")
        if e.meta.kind == "l":
            name += " →"
        pad = max(1, NAME_WIDTH - depth * self.guide_depth - cell_len(name))
        text = Text()
        text.append(f"{e.status or ' '} ", style=f"bold {colour}")
        text.append(name, style=colour or ("bold" if e.is_dir else ""))
        text.append(" " * pad)
        if size is None and not e.is_dir:
            size = e.meta.size
        shown = human_size(size) if size is not None else ""
        text.append(f"{e.mode_text}  {e.owner_text:>9}  {shown:>7}", style=status_colour(v, "dim"))
        return text

    def on_tree_node_expanded(self, event: Tree.NodeExpanded) -> None:
        event.stop()
        e = event.node.data
        if not isinstance(e, Entry) or self.query_text:
            return
        self._expanded.add(e.path)
        if not event.node.children:
            event.node.add_leaf(Text("loading…", style="italic"))
            self._load(event.node, e.path, self._generation)

    def on_tree_node_collapsed(self, event: Tree.NodeCollapsed) -> None:
        event.stop()
        if isinstance(event.node.data, Entry):
            self._expanded.discard(event.node.data.path)

    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted) -> None:
        event.stop()
        if isinstance(event.node.data, Entry):
            self._cursor_path = event.node.data.path
            self.post_message(EntryHighlighted(event.node.data))

    # -- search -----------------------------------------------------------------

    @work(thread=True, exclusive=True, group="files-search")
    def _search(self, text: str, generation: int) -> None:
        worker = get_current_worker()
        browser = self.browser
        found: list[Entry] = []
        with self.app.store_lock:
            for e in browser.search(text, self.kinds, SEARCH_LIMIT,
                                    cancelled=lambda: worker.is_cancelled):
                found.append(e)
        if generation == self._generation and not worker.is_cancelled:
            self._ui(self._fill_search, found, generation)

    def _fill_search(self, found: list[Entry], generation: int) -> None:
        if generation != self._generation:
            return
        self.root.remove_children()
        for e in found:
            self.root.add_leaf(self._label(e, 0, full=True), data=e)
        if not found:
            self.root.add_leaf(Text(f"no names contain {self.query_text!r}", style="italic"))
        more = "+" if len(found) >= SEARCH_LIMIT else ""
        self.border_subtitle = f"search {self.query_text!r}: {len(found)}{more} found"
        self.cursor_line = 0

    def set_query(self, text: str) -> None:
        self.query_text = text.strip()
        self.reload()

    # -- actions ----------------------------------------------------------------

    def _retitle(self) -> None:
        pane = self.parent
        if pane is None:
            return
        mode = "this layer only" if UNCHANGED not in self.kinds else "all files"
        kinds = [STATUS_WORDS[k] for k in "ACD" if k in self.kinds]
        shown = "all kinds" if len(kinds) == 3 else "+".join(kinds) or "no kinds"
        pane.border_title = f"Files · {self.label_text}"
        pane.border_subtitle = f"{mode} · {shown} · by {self.sort_by}"

    def action_toggle_layer_only(self) -> None:
        self.kinds ^= {UNCHANGED}
        self.reload()

    def action_toggle_kind(self, kind: str) -> None:
        self.kinds ^= {kind}
        self.reload()

    def action_toggle_sort(self) -> None:
        self.sort_by = BY_SIZE if self.sort_by == BY_NAME else BY_NAME
        self.reload()

    def action_search(self) -> None:
        search = self.parent.query_one("#file-search", Input)
        search.display = True
        search.focus()


def _level(node: TreeNode) -> int:
    """How deep `node` is: 0 for the (hidden) root, 1 for a top-level entry."""
    level = 0
    while node.parent is not None:
        level, node = level + 1, node.parent
    return level


class FilesPane(Vertical):
    """The tree plus its search box (hidden until `/`)."""

    BINDINGS = [Binding("escape", "clear_search", "Clear search", show=False)]

    def __init__(self) -> None:
        super().__init__(id="files-pane", classes="pane")
        self.border_title = "Files"

    def compose(self):  # noqa: ANN201 - Textual's ComposeResult
        search = Input(placeholder="search names (enter; esc clears)", id="file-search")
        search.display = False
        yield search
        yield FileTree()

    @property
    def file_tree(self) -> FileTree:
        return self.query_one(FileTree)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.file_tree.set_query(event.value)
        self.file_tree.focus()

    def hide_search(self) -> None:
        search = self.query_one("#file-search", Input)
        search.value = ""
        search.display = False

    def action_clear_search(self) -> None:
        self.hide_search()
        if self.file_tree.query_text:
            self.file_tree.set_query("")
        self.file_tree.focus()
