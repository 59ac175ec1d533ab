"""Finding the OCI runtime (crun, else runc) and where a container's bundle lives."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from typing import Any

from layerctl.errors import LayerctlError

NO_RUNTIME = "no OCI runtime found: install crun or runc (apt-get install crun)"


# -- finding the runtime ----------------------------------------------------------


def _crun_usable() -> bool:
    """crun refuses to run on a hybrid cgroup host whose cgroup v2 hierarchy
    has controllers ("cgroups in hybrid mode not supported"); runc copes."""
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        return True  # pure cgroup v2
    try:
        with open("/sys/fs/cgroup/unified/cgroup.controllers") as f:
            return not f.read().strip()
    except OSError:
        return True  # pure cgroup v1 (or no cgroups at all)


def find_runtime() -> str:
    """Path of the OCI runtime to use: $LAYERCTL_RUNTIME, else crun, else runc."""
    wanted = os.environ.get("LAYERCTL_RUNTIME")
    if wanted:
        path = shutil.which(wanted)
        if path is None:
            raise LayerctlError(f"LAYERCTL_RUNTIME={wanted}: no such executable")
        return path
    crun = shutil.which("crun")
    runc = shutil.which("runc")
    if crun and (runc is None or _crun_usable()):
        return crun
    if runc:
        return runc
    raise LayerctlError(NO_RUNTIME)


@dataclass(frozen=True)
class Runtime:
    """An OCI runtime binary and the state directory (``--root``) it keeps."""

    binary: str
    root: str

    @property
    def name(self) -> str:
        return os.path.basename(self.binary)

    def command(self, *args: str) -> list[str]:
        return [self.binary, "--root", self.root, *args]


def runtime_for(store: Any, binary: str | None = None) -> Runtime:
    """The runtime for `store` (state under ROOT/runtime/state/<name>)."""
    binary = binary or find_runtime()
    root = store.path("runtime", "state", os.path.basename(binary))
    os.makedirs(root, mode=0o700, exist_ok=True)
    return Runtime(binary, root)
