"""History editing: rebase, rebase -i, cherry-pick, revert, squash and split, all run
by one sequencer over a todo list of steps, each step a three-way merge (merge.py).

State lives in the store while an operation is under way: `refs/rebase/*` keep every
layer it wrote (and the container snapshot) reachable, `ROOT/rebase/state.json` (written
by rename) holds the todo list. Tags and containers move only when the sequencer
finishes, after every step succeeded, so a kill -9 leaves the old state (plus that
progress, which `--abort` drops) or the new one. A conflict stops with a *conflict
layer* (the partial result, conflicted text files with markers) and a container on it
where the user resolves; `--continue` commits that container's changes as the step's
result.

The modules, lowest first (each imports only the ones before it):
  state      the on-disk todo state, the refs that keep its layers, `status`'s line
  steps      one step on the tip: pick/revert/split by merge, squash/fixup, the new layer
  sequencer  run the todo list; stop, continue, skip, abort; finish (tags, a container)
  targets    what an operation edits (an image tag or a container) and how it starts
  commands   rebase, cherry-pick, revert, rebase -i (the todo text), squash, split

The public API is re-exported here.
"""

from layerctl.rewrite.commands import (
    cherry_pick,
    interactive,
    parse_todo,
    rebase,
    revert,
    split,
    squash,
    todo_text,
)
from layerctl.rewrite.sequencer import abort, continue_, set_container, skip
from layerctl.rewrite.state import Editor, NoRebase, Outcome, RebaseStopped, progress_line
from layerctl.rewrite.targets import find_old_base, image_holding, snapshot_container_changes

__all__ = [
    "Editor", "NoRebase", "Outcome", "RebaseStopped", "abort", "cherry_pick", "continue_",
    "find_old_base", "image_holding", "interactive", "parse_todo", "progress_line", "rebase",
    "revert", "set_container", "skip", "snapshot_container_changes", "split", "squash",
    "todo_text",
]
