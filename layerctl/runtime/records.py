"""Process records in a container's bundle: run.json (who supervises the process,
since when) and exit.json (its exit code once it has ended)."""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING, Any

from layerctl.atomic import write_json
from layerctl.store.debris import start_time

if TYPE_CHECKING:
    from layerctl.runtime.find import Runtime


def bundle_path(store: Any, container_id: str) -> str:
    """The bundle directory of a container (config.json, log, run and exit records)."""
    path: str = store.path("runtime", "bundles", container_id)
    return path


def read_json(path: str) -> dict[str, Any] | None:
    """A record (or config.json), or None when it is missing or unreadable."""
    try:
        with open(path) as f:
            found: dict[str, Any] = json.load(f)
    except (OSError, ValueError):
        return None
    return found


def alive(record: dict[str, Any] | None) -> bool:
    if not record or "pid" not in record:
        return False
    return start_time(record["pid"]) == record.get("start_time")


def supervised(bundle_dir: str) -> bool:
    """A supervisor is still waiting for the container's process."""
    if os.path.exists(os.path.join(bundle_dir, "exit.json")):
        return False
    return alive(read_json(os.path.join(bundle_dir, "run.json")))


def record_start(bundle_dir: str, rt: Runtime, container_id: str, detach: bool) -> None:
    try:
        os.unlink(os.path.join(bundle_dir, "exit.json"))
    except FileNotFoundError:
        pass
    pid = os.getpid()
    write_json(
        os.path.join(bundle_dir, "run.json"),
        {
            "id": container_id,
            "pid": pid,
            "start_time": start_time(pid),
            "runtime": rt.binary,
            "root": rt.root,
            "detached": detach,
            "started": time.time(),
        },
    )


def record_exit(bundle_dir: str, code: int) -> None:
    write_json(os.path.join(bundle_dir, "exit.json"), {"exit_code": code, "finished": time.time()})


def exit_code(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode
