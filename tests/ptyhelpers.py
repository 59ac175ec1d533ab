"""Test helpers for commands run on a terminal: start one as the session leader of a new
pty, read its output until a marker, and reap it."""

from __future__ import annotations

import os
import pty
import select
import sys
import time


def on_a_pty(argv: list[str], env: dict[str, str]) -> tuple[int, int]:
    """`argv` run as the session leader of a new terminal: (pid, the terminal's fd)."""
    pid, fd = pty.fork()
    if pid == 0:
        try:
            os.execve(sys.executable, argv, env)
        finally:
            os._exit(127)
    return pid, fd


def read_until(fd: int, needle: bytes, timeout: float) -> bytes:
    """What the terminal printed until `needle` appeared, it closed, or `timeout` s."""
    buf = b""
    deadline = time.monotonic() + timeout
    while needle not in buf and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the other side closed
            break
        if not chunk:
            break
        buf += chunk
    return buf


def reap(pid: int, fd: int, timeout: float) -> int:
    """The exit code of `pid`, killed if it has not exited after `timeout` s; `fd` closed."""
    status = None
    deadline = time.monotonic() + timeout
    while status is None and time.monotonic() < deadline:
        done, st = os.waitpid(pid, os.WNOHANG)
        status = st if done else None
        time.sleep(0.05)
    if status is None:
        os.kill(pid, 9)
        _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status)
