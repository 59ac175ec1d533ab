"""What a container's process is doing: the runtime's `state`, and the status `ps`
shows, read from the bundle's records (runtime/records.py) without asking the runtime
unless the records cannot tell. `ps` imports only this and records.py: subprocess and
the runtime's finder are imported when the runtime has to be asked."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from layerctl.runtime.records import alive, bundle_path, read_json

if TYPE_CHECKING:
    from layerctl.runtime.find import Runtime


def state(runtime: Runtime, container_id: str) -> dict[str, Any] | None:
    """The runtime's state of the container (``status``: created, running,
    stopped, paused; ``pid``), or None when the runtime does not know it."""
    import subprocess

    r = subprocess.run(
        runtime.command("state", container_id), capture_output=True, text=True,
        stdin=subprocess.DEVNULL,
    )
    if r.returncode != 0:
        return None
    try:
        found: dict[str, Any] = json.loads(r.stdout)
    except ValueError:
        return None
    return found


def status(store: Any, container_id: str) -> tuple[str, int | None]:
    """("created" | "running" | "exited", exit code) of a container's process.

    Reads only the records in the bundle dir (cheap; no runtime needed) unless
    the supervisor died without recording an exit, then asks the runtime."""
    bundle_dir = bundle_path(store, container_id)
    ended = read_json(os.path.join(bundle_dir, "exit.json"))
    record = read_json(os.path.join(bundle_dir, "run.json"))
    if ended is not None:
        return "exited", ended.get("exit_code")
    if record is None:
        return "created", None
    if alive(record):
        return "running", None
    from layerctl.runtime.find import Runtime

    try:
        st = state(Runtime(record["runtime"], record["root"]), container_id)
    except (OSError, KeyError):
        st = None
    if st is not None and st.get("status") in ("created", "running", "paused"):
        return "running", None
    return "exited", None
