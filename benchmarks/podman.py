"""podman and skopeo on a private storage under a work dir, never the machine's."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from benchmarks.harness import run


class PrivatePodman:
    """podman with its own --root/--runroot (overlay driver, as a user would have)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.run = Path(tempfile.mkdtemp(prefix="lcb-run-"))  # runroot must be short
        self.base = ["podman", "--root", str(root), "--runroot", str(self.run),
                     "--storage-driver", "overlay"]

    @property
    def storage_ref(self) -> str:
        """This storage as a skopeo transport reference prefix."""
        return f"containers-storage:[overlay@{self.root}+{self.run}]"

    def __call__(self, *args: str | os.PathLike) -> subprocess.CompletedProcess:
        return run([*self.base, *args])

    def reset(self) -> None:
        subprocess.run([*self.base, "rmi", "-a", "-f"], capture_output=True)

    def close(self) -> None:
        self.reset()
        subprocess.run([*self.base, "system", "reset", "-f"], capture_output=True)
        subprocess.run(["umount", "-R", str(self.root)], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.rmtree(self.run, ignore_errors=True)
