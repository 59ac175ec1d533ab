"""Containers the runtime knows: state, kill, stop, delete, and the status `ps` shows."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from typing import Any

from layerctl.errors import Conflict, LayerctlError
from layerctl.runtime.find import Runtime, runtime_for
from layerctl.runtime.process import state, status
from layerctl.runtime.records import bundle_path, read_json, supervised


def list_containers(runtime: Runtime) -> list[dict]:
    """Every container the runtime knows under layerctl's state root."""
    r = subprocess.run(
        runtime.command("list", "--format", "json"), capture_output=True, text=True,
        stdin=subprocess.DEVNULL,
    )
    if r.returncode != 0:
        return []
    try:
        return json.loads(r.stdout or "[]") or []
    except ValueError:
        return []


def is_running(runtime: Runtime, container_id: str, bundle_dir: str | None = None) -> bool:
    st = state(runtime, container_id)
    if st is not None and st.get("status") in ("created", "running", "paused"):
        return True
    return bundle_dir is not None and supervised(bundle_dir)


def kill(runtime: Runtime, container_id: str, sig: str = "TERM") -> bool:
    """Send `sig` to the container's init process; False if it is not running."""
    r = subprocess.run(
        runtime.command("kill", container_id, sig), capture_output=True, text=True,
        stdin=subprocess.DEVNULL,
    )
    return r.returncode == 0


def _wait_gone(runtime: Runtime, container_id: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        st = state(runtime, container_id)
        if st is None or st.get("status") == "stopped":
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def stop(
    runtime: Runtime, container_id: str, timeout: float = 10, bundle_dir: str | None = None
) -> None:
    """SIGTERM, then SIGKILL after `timeout` seconds, then remove the runtime's
    container; with `bundle_dir`, also wait for the supervisor to record the exit."""
    st = state(runtime, container_id)
    if st is not None and st.get("status") in ("created", "running", "paused"):
        if st.get("status") == "paused":
            subprocess.run(runtime.command("resume", container_id), capture_output=True)
        kill(runtime, container_id, "TERM")
        if not _wait_gone(runtime, container_id, timeout):
            kill(runtime, container_id, "KILL")
            _wait_gone(runtime, container_id, 10)
    if bundle_dir is not None:
        deadline = time.monotonic() + 10
        while supervised(bundle_dir) and time.monotonic() < deadline:
            time.sleep(0.05)
    delete(runtime, container_id, force=True)


def delete(runtime: Runtime, container_id: str, force: bool = False) -> None:
    """Remove the runtime's container (``--force`` kills a running one first)."""
    if state(runtime, container_id) is None:
        return
    cmd = runtime.command("delete", *(["--force"] if force else []), container_id)
    r = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if r.returncode != 0 and state(runtime, container_id) is not None:
        raise LayerctlError(
            f"{runtime.name} delete {container_id} failed: {r.stderr.strip() or r.returncode}"
        )


def log_path(store: Any, container_id: str) -> str:
    return os.path.join(bundle_path(store, container_id), "container.log")


def runtime_of(store: Any, container_id: str) -> Runtime:
    """The runtime that last ran the container (exec and stop must use the same
    one and the same state root), else the default runtime."""
    record = read_json(os.path.join(bundle_path(store, container_id), "run.json"))
    if record and record.get("runtime") and os.path.exists(record["runtime"]):
        return Runtime(record["runtime"], record["root"])
    return runtime_for(store)


def forget(store: Any, container_id: str, force: bool = False, timeout: float = 0) -> None:
    """For ``rm``: drop the container's runtime state and bundle. A running
    container is an error unless `force` (then it is stopped first)."""
    bundle_dir = bundle_path(store, container_id)
    if not os.path.isdir(bundle_dir):
        return
    if status(store, container_id)[0] == "running":
        if not force:
            raise Conflict(f"container {container_id[:12]} is running: stop it first or use -f")
        stop(runtime_of(store, container_id), container_id, timeout, bundle_dir)
    else:
        record = read_json(os.path.join(bundle_dir, "run.json"))
        if record and record.get("runtime") and os.path.exists(record["runtime"]):
            delete(Runtime(record["runtime"], record["root"]), container_id, force=True)
    shutil.rmtree(bundle_dir, ignore_errors=True)
