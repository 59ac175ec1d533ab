"""Stock git, run with no system or user configuration, for checking what layerctl writes."""

from __future__ import annotations

import os
import subprocess

GIT_ENV = {
    **os.environ,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
}


def git(*args, cwd=None) -> str:
    out = subprocess.run(
        ["git", *map(str, args)], capture_output=True, text=True, env=GIT_ENV, cwd=cwd
    )
    assert out.returncode == 0, out.stderr
    return out.stdout
