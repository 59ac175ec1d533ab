"""Running a bundle: the supervisor that waits for `<runtime> run` and records its exit
code (the caller in the foreground, a double-forked daemon when detached), and exec."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time

from layerctl.atomic import write_json
from layerctl.errors import BadInput, LayerctlError, NotFound
from layerctl.runtime.control import delete, is_running
from layerctl.runtime.find import Runtime
from layerctl.runtime.process import state
from layerctl.runtime.records import exit_code, read_json, record_exit, record_start
from layerctl.runtime.spec import merge_env
from layerctl.runtime.users import resolve_user

START_TIMEOUT = 30.0


def _supervise(
    rt: Runtime, container_id: str, bundle_dir: str, detach: bool, interactive: bool = True
) -> int:
    """Run the container's process to its end and record its exit code."""
    record_start(bundle_dir, rt, container_id, detach)
    code = 125
    try:
        # A stale container of the same id (its supervisor was killed) is removed.
        if state(rt, container_id) is not None:
            delete(rt, container_id, force=True)
        pid_file = os.path.join(bundle_dir, "container.pid")
        try:
            os.unlink(pid_file)
        except FileNotFoundError:
            pass
        cmd = rt.command("run", "--bundle", bundle_dir, "--pid-file", pid_file, container_id)
        proc = subprocess.Popen(
            cmd, stdin=None if interactive and not detach else subprocess.DEVNULL
        )
        code = _wait_forwarding(proc)
    finally:
        record_exit(bundle_dir, code)
    return code


def _wait_forwarding(proc: subprocess.Popen) -> int:
    """Wait for the runtime, passing SIGTERM/SIGHUP/SIGQUIT on to it. SIGINT from
    the terminal already reaches the runtime (same process group): ignore it here."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return exit_code(proc.wait())

    def forward(signum: int, frame: object) -> None:
        try:
            proc.send_signal(signum)
        except OSError:
            pass

    saved = {}
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGINT):
        handler = (lambda s, f: None) if sig == signal.SIGINT else forward
        saved[sig] = signal.signal(sig, handler)
    try:
        while True:
            try:
                return exit_code(proc.wait())
            except InterruptedError:
                continue
    finally:
        for sig, old in saved.items():
            signal.signal(sig, old)


def run(
    runtime: Runtime,
    container_id: str,
    bundle_dir: str,
    *,
    detach: bool = False,
    tty: bool = False,
    log_path: str | None = None,
    interactive: bool = True,
    on_exit: list[str] | None = None,
    remove_bundle: bool = False,
) -> int:
    """Run the bundle's process as container `container_id`.

    Foreground: the process uses this process's stdio (stdin only when
    `interactive`; with a tty the runtime proxies this terminal, and `tty` must
    match the bundle's ``process.terminal``); returns its exit code. Detached:
    a supervisor daemon runs it with stdin /dev/null and stdout/stderr appended
    to `log_path` (default ``bundle_dir/container.log``), then runs the command
    `on_exit` if given (e.g. ``layerctl rm`` for ``run -d --rm``; with
    `remove_bundle`, the bundle dir goes too when it succeeds); returns 0
    once the process is running (or has already run).
    """
    bundle_dir = os.path.abspath(bundle_dir)
    if not os.path.isfile(os.path.join(bundle_dir, "config.json")):
        raise NotFound(f"{bundle_dir}: no config.json (make_bundle first)")
    if is_running(runtime, container_id, bundle_dir):
        raise LayerctlError(f"container {container_id} is already running")
    if not detach:
        return _supervise(
            runtime, container_id, bundle_dir, detach=False, interactive=interactive or tty
        )
    process = (read_json(os.path.join(bundle_dir, "config.json")) or {}).get("process", {})
    if process.get("terminal"):
        raise BadInput("a detached container cannot have a terminal (bundle made with tty=True)")
    hook = os.path.join(bundle_dir, "on-exit.json")
    if on_exit:
        write_json(hook, {"argv": list(on_exit), "remove_bundle": remove_bundle})
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(hook)
    log_path = os.path.abspath(log_path or os.path.join(bundle_dir, "container.log"))
    _spawn_supervisor(runtime, container_id, bundle_dir, log_path)
    return _wait_started(runtime, container_id, bundle_dir, log_path)


def _spawn_supervisor(rt: Runtime, container_id: str, bundle_dir: str, log_path: str) -> None:
    try:
        os.unlink(os.path.join(bundle_dir, "exit.json"))
    except FileNotFoundError:
        pass
    try:
        os.unlink(os.path.join(bundle_dir, "run.json"))
    except FileNotFoundError:
        pass
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_parent, env.get("PYTHONPATH")) if p)
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
    try:
        first = subprocess.Popen(
            [sys.executable, "-m", "layerctl.runtime", "supervise",
             rt.binary, rt.root, container_id, bundle_dir],
            stdin=subprocess.DEVNULL,
            stdout=log_fd,
            stderr=log_fd,
            start_new_session=True,
            close_fds=True,
            env=env,
            cwd="/",
        )
    finally:
        os.close(log_fd)
    # The first process forks the supervisor and exits at once (double fork):
    # the supervisor is nobody's child here, so it never becomes our zombie.
    if first.wait() != 0:
        raise LayerctlError(f"could not start the supervisor of {container_id} (see {log_path})")


def _wait_started(rt: Runtime, container_id: str, bundle_dir: str, log_path: str) -> int:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        ended = read_json(os.path.join(bundle_dir, "exit.json"))
        st = state(rt, container_id)
        if st is not None and st.get("status") in ("running", "paused"):
            return 0
        if ended is not None:
            if os.path.exists(os.path.join(bundle_dir, "container.pid")):
                return 0  # it ran and has already finished
            detail = _log_tail(log_path)
            raise LayerctlError(
                f"container {container_id} failed to start" + (f": {detail}" if detail else "")
            )
        time.sleep(0.05)
    raise LayerctlError(f"container {container_id} did not start within {START_TIMEOUT:.0f}s")


def _log_tail(log_path: str, limit: int = 400) -> str:
    try:
        with open(log_path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            return f.read().decode(errors="replace").strip().splitlines()[-1]
    except (OSError, IndexError):
        return ""


def _daemon_main(binary: str, root: str, container_id: str, bundle_dir: str) -> None:
    if os.fork() != 0:
        os._exit(0)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    code = _supervise(Runtime(binary, root), container_id, bundle_dir, detach=True)
    hook = read_json(os.path.join(bundle_dir, "on-exit.json"))
    if hook and hook.get("argv"):
        with contextlib.suppress(OSError):
            done = subprocess.run(hook["argv"], stdin=subprocess.DEVNULL, cwd="/")
            if done.returncode == 0 and hook.get("remove_bundle"):
                shutil.rmtree(bundle_dir, ignore_errors=True)
    os._exit(code & 0xFF)


def exec_(
    runtime: Runtime,
    container_id: str,
    args: list[str],
    *,
    env: list[str] | None = None,
    workdir: str | None = None,
    user: str | None = None,
    tty: bool = False,
    rootfs: str | None = None,
    detach: bool = False,
) -> int:
    """Run `args` in the running container (``<runtime> exec``); returns its exit code.

    `user` is ``uid[:gid]`` or a name resolved in `rootfs`."""
    if not args:
        raise BadInput("exec: no command given")
    st = state(runtime, container_id)
    if st is None or st.get("status") not in ("running", "paused"):
        raise LayerctlError(f"container {container_id} is not running")
    cmd = runtime.command("exec")
    if tty:
        cmd.append("--tty")
    if detach:
        cmd.append("--detach")
    for item in merge_env([], env or []):
        cmd += ["--env", item]
    if workdir:
        cmd += ["--cwd", workdir]
    if user:
        if rootfs is not None:
            u = resolve_user(rootfs, user)
            cmd += ["--user", f"{u['uid']}:{u['gid']}"]
        else:
            cmd += ["--user", user]
    cmd += [container_id, *args]
    proc = subprocess.Popen(cmd)
    return _wait_forwarding(proc)
