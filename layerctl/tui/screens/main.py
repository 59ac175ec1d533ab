"""The main screen: Layers and Changes on the left, Files and Preview on the right.

Every read and write of the store runs in a worker thread under the app's store
lock (dulwich pack readers are not thread-safe); the UI thread only renders.
"""

from __future__ import annotations

from functools import partial

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header

from layerctl.errors import LayerctlError
from layerctl.patch import path_text
from layerctl.presentation.browse import LayerBrowser, PendingBrowser, read_container_file
from layerctl.tui.messages import (
    ChangeHighlighted,
    EntryHighlighted,
    LayerSelected,
    StagingChanged,
)
from layerctl.tui.watcher import LockedWatcher
from layerctl.tui.widgets.changes import ChangeList, DiscardRequested
from layerctl.tui.widgets.files import FilesPane, FileTree
from layerctl.tui.widgets.layers import LayerStack
from layerctl.tui.widgets.preview import FilePreview, lexer_for
from layerctl.tui.workers import WorkerCalls


class MainScreen(WorkerCalls, Screen):
    BINDINGS = [
        Binding("c", "commit", "Commit"),
        Binding("v", "toggle_diff", "Content/diff"),
        Binding("l", "app.show_log", "Log"),
        Binding("i", "app.show_images", "Images"),
        Binding("o", "app.show_containers", "Containers"),
        Binding("w", "waste", "Waste"),
        Binding("E", "edit_history", "Edit history"),
        Binding("h", "stage_hunks", "Commit hunks", show=False),
        Binding("r", "refresh", "Refresh"),
        Binding("z", "undo", "Undo"),
        Binding("slash", "files_search", "Search files", show=False),
        Binding("question_mark", "app.show_help", "Help"),
        Binding("q", "app.quit", "Quit"),
    ]

    def __init__(self, container: str | None = None, image: str | None = None) -> None:
        super().__init__()
        self.container = container
        self.image = image
        self.diff_mode = False
        self.browser = None  # what the Files pane shows
        self.pending_browser: PendingBrowser | None = None
        self.base_root = None
        self.view = None
        self.watcher: LockedWatcher | None = None
        self.selected: str | None = None  # layer id; None = pending
        self.highlighted = None  # (browser, entry) last previewed
        self.author = ""

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            with Vertical(id="left"):
                yield LayerStack(self.app.clock)
                yield ChangeList()
            with Vertical(id="right"):
                yield FilesPane()
                yield FilePreview()
        yield Footer()

    @property
    def stack(self) -> LayerStack:
        return self.query_one(LayerStack)

    @property
    def change_list(self) -> ChangeList:
        return self.query_one(ChangeList)

    @property
    def file_tree(self) -> FileTree:
        return self.query_one(FileTree)

    def on_mount(self) -> None:
        what = f"container {self.container}" if self.container else (
            f"image {self.image}" if self.image else "no image")
        self.sub_title = what
        if not self.container:
            self.change_list.display = False
        self.stack.focus()
        self.load_stack()
        if self.container:
            self.start_watch()

    def on_unmount(self) -> None:
        self.stop_watch()

    # -- the stack ----------------------------------------------------------------

    @work(thread=True, exclusive=True, group="stack")
    def load_stack(self) -> None:
        from layerctl.containers.state import base, resolve
        from layerctl.identity import default_author
        from layerctl.images import chain, layer_sizes
        from layerctl.images import resolve as resolve_layer

        store = self.app.store
        try:
            with self.app.store_lock:
                if self.container:
                    c = resolve(store, self.container)
                    top = base(store, c)
                elif self.image:
                    top = resolve_layer(store, self.image)
                else:
                    top = None
                layers = chain(store, top) if top else []
                sizes = dict(zip((layer.id for layer in layers),
                                 layer_sizes(store, layers), strict=True))
            author = default_author()
        except LayerctlError as e:
            self._ui(self.notify, str(e), severity="error", markup=False)
            return
        pending = len(self.change_list.changes) if self.container else None
        self._ui(self._show_stack, layers, sizes, pending, author)

    def _show_stack(self, layers: list, sizes: dict[str, int], pending: int | None,
                    author: str) -> None:
        self.author = author
        self.stack.show_stack(layers, sizes, pending, author)
        if not layers and not self.container:
            self.notify("No image to show: try `layerctl demo`, or open Images (i).",
                        timeout=10)

    def on_layer_selected(self, event: LayerSelected) -> None:
        self.selected = event.layer_id
        self.load_files()

    @work(thread=True, exclusive=True, group="browser")
    def load_files(self) -> None:
        layer_id = self.selected
        try:
            with self.app.store_lock:
                if layer_id is None:
                    browser = self.pending_browser
                    label = "pending changes"
                else:
                    browser = LayerBrowser.for_layer(self.app.store, layer_id)
                    label = f"layer {self.app.short_id(layer_id)}"
        except LayerctlError as e:
            self._ui(self.notify, str(e), severity="error", markup=False)
            return
        if browser is not None:
            self._ui(self._browse, browser, label)

    def _browse(self, browser: object, label: str) -> None:
        self.browser = browser
        self.file_tree.browse(browser, label)

    # -- changes ------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="watch")
    def start_watch(self) -> None:
        """Scan once, then follow the upper dir (or vfs rootfs) for as long as we live."""
        from layerctl.containers.state import resolve
        from layerctl.containers.worktree import pending, view_of
        from layerctl.store.layers import read_layer

        store = self.app.store
        try:
            with self.app.store_lock:
                c = resolve(store, self.container)
                watcher = LockedWatcher(self.app.store_lock, self._watch_failed, store, c,
                                        self._updated, debounce=self.app.debounce)
                read = []

                def starting_status() -> list:
                    read.append(pending(store, c))
                    return read[0].changes

                watcher.begin(starting_status)
                p = read[0]
                self.view = view_of(store, c)
                self.base_root = read_layer(store, p.base_id).root
                self._new_pending_browser(p.changes)
        except LayerctlError as e:
            self._ui(self.notify, str(e), severity="error", markup=False)
            return
        self.watcher = watcher
        self._ui(self._changes_loaded, p.changes)
        watcher.run_forever()  # returns when stop_watch() stops it

    def _watch_failed(self, error: Exception) -> None:
        self._ui(self.notify, f"watching stopped: {error}", severity="error",
                                  markup=False)

    def stop_watch(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
            self.watcher = None

    def _new_pending_browser(self, changes: list) -> None:
        view = self.view
        self.pending_browser = PendingBrowser(
            self.app.store, self.base_root, changes, partial(read_container_file, view))

    def _changes_loaded(self, changes: list) -> None:
        self.change_list.load(changes)
        self.stack.update_pending(len(changes), self.author)
        if self.selected is None:
            self.load_files()

    def _updated(self, updates: list) -> None:
        """From the watcher's thread: the paths whose status changed."""
        with self.app.store_lock:
            known = list(self.watcher.known.values()) if self.watcher else []
            self._new_pending_browser(known)
        self._ui(self._apply_updates, updates)

    def _apply_updates(self, updates: list) -> None:
        self.change_list.apply(updates)
        self.stack.update_pending(len(self.change_list.changes), self.author)
        if self.selected is None:
            self.load_files()

    @work(thread=True, exclusive=True, group="rescan")
    def rescan(self, restart: bool = False) -> None:
        """A full scan (after a commit, restore or reset moved the base)."""
        from layerctl.containers.state import resolve
        from layerctl.containers.worktree import pending
        from layerctl.store.layers import read_layer

        if restart:
            self._ui(self.stop_watch)
            self._ui(self.start_watch)
            return
        store = self.app.store
        try:
            with self.app.store_lock:
                c = resolve(store, self.container)
                p = pending(store, c)
                self.base_root = read_layer(store, p.base_id).root
                if self.watcher is not None:
                    self.watcher.known = {ch.path: ch for ch in p.changes}
                self._new_pending_browser(p.changes)
        except (LayerctlError, OSError) as e:
            self._ui(self.notify, str(e), severity="error", markup=False)
            return
        self._ui(self._changes_loaded, p.changes)

    def on_staging_changed(self, event: StagingChanged) -> None:
        event.stop()

    def on_change_highlighted(self, event: ChangeHighlighted) -> None:
        ch = self.change_list.changes.get(event.path)
        if ch is not None and self.pending_browser is not None:
            self.preview(self.pending_browser, ch, True)

    def on_entry_highlighted(self, event: EntryHighlighted) -> None:
        if event.entry is not None and self.browser is not None:
            self.preview(self.browser, event.entry, self.diff_mode)

    @work(thread=True, exclusive=True, group="preview")
    def preview(self, browser: object, item: object, diff: bool) -> None:
        from layerctl.presentation.browse import Entry

        try:
            with self.app.store_lock:
                entry = item if isinstance(item, Entry) else browser.entry_for_change(item)
                result = browser.preview(entry, diff=diff)
        except (LayerctlError, OSError) as e:
            self._ui(self.notify, f"cannot preview: {e}", severity="error",
                                      markup=False)
            return
        self.highlighted = (browser, entry)
        self._ui(lambda: self.query_one(FilePreview).show_preview(
            result, "diff" if diff else "content", lexer_for(result)))

    def action_toggle_diff(self) -> None:
        self.diff_mode = not self.diff_mode
        if self.highlighted is not None:
            browser, entry = self.highlighted
            self.preview(browser, entry, self.diff_mode)
        self.notify(f"Preview shows {'diffs' if self.diff_mode else 'content'}", timeout=2)

    # -- jumps from the insight screens -------------------------------------------

    def show_layer(self, layer_id: str | None, path: bytes | None = None) -> bool:
        """Select a layer in Layers (None: the pending row) and, given `path`, put the
        Files cursor on it once that layer's files load. False if the layer is not in
        the stack."""
        tree = self.file_tree
        stack = self.stack
        if stack.row_count and stack.selected_layer() == layer_id and (
                layer_id is not None or stack.has_pending):
            if path is not None:
                tree.reveal(path)
        else:
            if path is not None:
                tree.reveal(path, now=False)
            if not stack.select_layer(layer_id):
                return False
        (tree if path is not None else stack).focus()
        return True

    def _jump(self, result: tuple[str | None, bytes | None] | None) -> None:
        if result is not None and not self.show_layer(*result):
            self.notify("That layer is not in this stack.", severity="warning")

    def action_waste(self) -> None:
        from layerctl.tui.screens.waste import WasteScreen

        if not self.stack.stack_layers:
            self.notify("No image to analyse.", severity="warning")
            return
        self.app.push_screen(WasteScreen(self.container, self.image), self._jump)

    def action_stage_hunks(self) -> None:
        from layerctl.tui.screens.hunks import HunkScreen

        path = self.change_list.current_path() if self.container else None
        if path is None:
            self.notify("Highlight a changed file in Changes.", severity="warning")
            return
        self.app.push_screen(HunkScreen(self.container, path, self.author))

    def action_edit_history(self) -> None:
        from layerctl.tui.screens.rebase import RebaseScreen

        target = self.container or self.image
        if not target or not self.stack.stack_layers:
            self.notify("No image or container to edit.", severity="warning")
            return
        self.app.push_screen(RebaseScreen(target))

    def action_blame(self) -> None:
        from layerctl.presentation.browse import Entry
        from layerctl.tui.screens.blame import BlameScreen

        node = self.file_tree.cursor_node
        entry = node.data if node is not None else None
        if not isinstance(entry, Entry) or not self.stack.stack_layers:
            self.notify("Highlight a file in Files to blame it.", severity="warning")
            return
        top = self.stack.stack_layers[-1].id
        self.app.push_screen(BlameScreen(self.container, top, entry.path), self._jump)

    # -- actions ------------------------------------------------------------------

    def action_stage(self) -> None:
        self.change_list.action_toggle_stage()

    def action_stage_all(self) -> None:
        self.change_list.action_stage_all()

    def action_discard(self) -> None:
        self.change_list.action_discard()

    def action_files_toggle(self) -> None:
        self.file_tree.action_toggle_layer_only()

    def action_files_kind(self, kind: str) -> None:
        self.file_tree.action_toggle_kind(kind)

    def action_files_sort(self) -> None:
        self.file_tree.action_toggle_sort()

    def action_files_search(self) -> None:
        self.file_tree.action_search()

    def action_refresh(self) -> None:
        self.reload(restart=False)

    def reload(self, restart: bool = True) -> None:
        """The stack again, and a container's changes (after something moved its base
        or rewrote its files: `restart` also restarts the watch)."""
        self.load_stack()
        if self.container:
            self.rescan(restart=restart)

    def action_commit(self) -> None:
        from layerctl.tui.screens.commit import CommitDialog

        if not self.container:
            self.notify("Open a container to commit (o: Containers).", severity="warning")
            return
        changes = self.change_list
        if not changes.changes:
            self.notify("Nothing to commit: the container has no pending changes.",
                        severity="warning")
            return
        staged = changes.staged_changes()
        everything = not staged or len(staged) == len(changes.changes)
        going = [changes.changes[p] for p in changes.paths] if everything else staged
        self.app.push_screen(CommitDialog(self.container, going, everything, self.author),
                             self._committed)

    def _committed(self, result: object) -> None:
        if result is None:
            return
        n = len(result.changes)
        left = f", {result.remaining} still pending" if result.remaining else ""
        self.notify(f"Committed layer {result.layer_id[:12]}: {n} change"
                    f"{'s' if n != 1 else ''}{left}", title="Commit landed")
        self.change_list.staged.clear()
        self.load_stack()
        self.rescan()

    def on_discard_requested(self, event: DiscardRequested) -> None:
        from layerctl.tui.screens.dialogs import ConfirmDialog

        shown = path_text(event.path)

        def answered(yes: bool | None) -> None:
            if yes:
                self.discard(shown)

        self.app.push_screen(ConfirmDialog(
            f"Discard the pending change to {shown}?\n\nThe container's file goes back to "
            "what the base layer holds (z undoes it).", "Discard"), answered)

    @work(thread=True, group="discard")
    def discard(self, path: str) -> None:
        from layerctl.containers.discard import restore

        try:
            with self.app.store_lock:
                done = restore(self.app.store, self.container, [path])
        except (LayerctlError, OSError) as e:
            self._ui(self.notify, str(e), severity="error", markup=False)
            return
        self._ui(self.notify, f"Discarded {len(done)} change(s) at {path}",
                                  markup=False)
        self.rescan()

    def action_reset_to_layer(self) -> None:
        from layerctl.tui.screens.dialogs import ConfirmDialog

        layer_id = self.stack.selected_layer()
        if not self.container or layer_id is None:
            self.notify("Select a layer of a container's stack to reset to.",
                        severity="warning")
            return
        n = len(self.change_list.changes)

        def answered(yes: bool | None) -> None:
            if yes:
                self.reset(layer_id)

        self.app.push_screen(ConfirmDialog(
            f"Reset container {self.container} to layer {layer_id[:12]}?\n\n"
            f"Its {n} pending change(s) are discarded and its base becomes that layer "
            "(z undoes it).",
            "Reset"), answered)

    @work(thread=True, group="undo")
    def action_undo(self) -> None:
        """`layerctl undo`: the state before the last command, the CLI's or ours."""
        from layerctl.undo import undo

        self._ui(self.stop_watch)
        try:
            with self.app.store_lock:
                plan = undo(self.app.store)
        except (LayerctlError, OSError) as e:
            self._ui(self.notify, str(e), severity="error", markup=False)
        else:
            self._ui(self.notify, f"Undid: {plan.label}", title="Undo", markup=False)
        self._ui(self.load_stack)
        self._ui(self.start_watch)
        if self.container:
            self.rescan()

    @work(thread=True, group="reset")
    def reset(self, layer_id: str) -> None:
        from layerctl.containers.discard import reset

        self._ui(self.stop_watch)
        try:
            with self.app.store_lock:
                reset(self.app.store, self.container, layer_id)
        except (LayerctlError, OSError) as e:
            self._ui(self.notify, str(e), severity="error", markup=False)
        else:
            self._ui(self.notify, f"Reset to layer {layer_id[:12]}", markup=False)
        self._ui(self.load_stack)
        self._ui(self.start_watch)
