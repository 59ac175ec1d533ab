"""Running processes in a container through a real OCI runtime (crun or runc).

No home-made runtime: layerctl writes an OCI runtime bundle (``config.json``,
runtime spec 1.0) whose root is the container's merged rootfs, and hands it to
``crun``/``runc``. Layout in the store::

    ROOT/runtime/state/<runtime>/     the runtime's own state (``--root``), so
                                      layerctl's containers never mix with others
    ROOT/runtime/bundles/<id>/        config.json, container.log,
                                      run.json  (who supervises the process)
                                      exit.json (exit code once it has ended)

Every process runs under a *supervisor* that waits for ``<runtime> run`` and
records its exit code: in the foreground that is the calling process itself; a
detached container gets a daemon (``python -m layerctl.runtime supervise``,
double-forked, setsid) whose stdout/stderr are the log file. The runtime's
``run`` removes the container when its process ends, so a stopped container is
simply started again with ``run`` on the same bundle.

Isolation: pid, ipc, uts, mount and network namespaces (a new network
namespace holds only a loopback device: the equivalent of ``--network none``;
layerctl sets up no networking, and sharing the host's network namespace would
let a container reach host-only sockets such as abstract unix sockets). The
process sees only its rootfs (the runtime pivot_roots into it), with the
default spec's masked and read-only paths, Docker's default capabilities and no
rlimits (the runtime keeps the inherited ones).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from layerctl.atomic import write_json
from layerctl.errors import BadInput, Conflict, LayerctlError, NotFound
from layerctl.store.debris import start_time

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Docker's default capability set.
DEFAULT_CAPS = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
]

MASKED_PATHS = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
]

READONLY_PATHS = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
]

NO_RUNTIME = "no OCI runtime found: install crun or runc (apt-get install crun)"

# How long `run --detach` waits for the container to come up.
START_TIMEOUT = 30.0


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


def bundle_path(store: Any, container_id: str) -> str:
    """The bundle directory of a container (config.json, log, exit record)."""
    return store.path("runtime", "bundles", container_id)


# -- reading files inside the rootfs safely ----------------------------------------


def _resolve_in_root(rootfs: str, path: str) -> str:
    """Host path of `path` inside `rootfs`, following symlinks as if rootfs were /
    (a symlink in a hostile image can never lead out of it)."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    done: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if done:
                done.pop()
            continue
        host = os.path.join(rootfs, *done, part)
        if os.path.islink(host):
            hops += 1
            if hops > 40:
                raise BadInput(f"{path}: too many levels of symbolic links in the image")
            target = os.readlink(host)
            if target.startswith("/"):
                done = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        done.append(part)
    return os.path.join(rootfs, *done)


USER_DB_LIMIT = 16 << 20  # /etc/passwd or /etc/group larger than this is refused


def _read_db(rootfs: str, name: str) -> list[list[str]]:
    """The colon-separated records of /etc/passwd or /etc/group in the image: a
    missing file has none; one that is not a regular file (a FIFO, a device) or
    is absurdly large is refused, never read (the image may be hostile)."""
    from layerctl.beneath import Changed, Tree

    rel = os.fsencode(os.path.relpath(_resolve_in_root(rootfs, name), rootfs))
    tree = Tree(os.fsencode(rootfs))
    try:
        st = tree.lstat(rel)
        if st is None:
            return []
        if not stat.S_ISREG(st.st_mode):
            raise BadInput(f"{name} in the image is not a regular file; cannot look up users")
        if st.st_size > USER_DB_LIMIT:
            raise BadInput(f"{name} in the image is larger than {USER_DB_LIMIT >> 20} MiB")
        data = tree.read(rel, USER_DB_LIMIT + 1, st)
    except Changed:
        raise BadInput(f"{name} in the image changed while read; try again") from None
    except OSError:
        return []
    finally:
        tree.close()
    if len(data) > USER_DB_LIMIT:
        raise BadInput(f"{name} in the image is larger than {USER_DB_LIMIT >> 20} MiB")
    text = data.decode("utf-8", "replace")
    return [line.split(":") for line in text.split("\n") if line.strip() and line[0] != "#"]


def resolve_user(rootfs: str, user: str | None) -> dict:
    """An OCI ``process.user`` (+ "home") for Docker's ``user[:group]`` (names or ids)."""
    user = (user or "").strip() or "0"
    name, _, group = user.partition(":")
    passwd = _read_db(rootfs, "/etc/passwd")
    groups = _read_db(rootfs, "/etc/group")
    entry = None
    if name.isdigit():
        uid = int(name)
        entry = next((e for e in passwd if len(e) >= 7 and e[2] == name), None)
    else:
        entry = next((e for e in passwd if len(e) >= 7 and e[0] == name), None)
        if entry is None:
            raise NotFound(f"unable to find user {name}: no matching entries in passwd file")
        uid = int(entry[2])
    gid = int(entry[3]) if entry is not None and entry[3].isdigit() else 0
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            gentry = next((g for g in groups if len(g) >= 3 and g[0] == group), None)
            if gentry is None:
                raise NotFound(f"unable to find group {group}: no matching entries in group file")
            gid = int(gentry[2])
    extra: list[int] = []
    if entry is not None and not group:
        for g in groups:
            if len(g) >= 4 and entry[0] in g[3].split(",") and g[2].isdigit():
                if int(g[2]) != gid and int(g[2]) not in extra:
                    extra.append(int(g[2]))
    home = entry[5] if entry is not None and entry[5] else "/"
    out: dict = {"uid": uid, "gid": gid, "home": home}
    if extra:
        out["additionalGids"] = extra
    return out


# -- the bundle ------------------------------------------------------------------


def merge_env(image_env: list[str], overrides: list[str]) -> list[str]:
    """Docker's rule: image Env, then -e overrides (same key replaced, order kept).
    ``-e KEY`` without '=' is taken from the caller's environment (or dropped)."""
    merged: dict[str, str] = {}
    for item in image_env or []:
        key, _, value = item.partition("=")
        merged[key] = value
    for item in overrides or []:
        key, eq, value = item.partition("=")
        if not key:
            raise BadInput(f"invalid environment variable: {item!r}")
        if not eq:
            if key not in os.environ:
                continue
            value = os.environ[key]
        merged[key] = value
    return [f"{k}={v}" for k, v in merged.items()]


def process_args(image_config: dict, args: list[str] | None) -> list[str]:
    """Entrypoint + Cmd, with Cmd replaced by `args` when given (Docker's rule)."""
    cfg = image_config.get("config") or {}
    entrypoint = list(cfg.get("Entrypoint") or [])
    cmd = list(args) if args else list(cfg.get("Cmd") or [])
    argv = entrypoint + cmd
    if not argv:
        raise BadInput("no command specified: the image has no Cmd or Entrypoint")
    return argv


def _mounts() -> list[dict]:
    return [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        },
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        },
        {
            "destination": "/dev/mqueue",
            "type": "mqueue",
            "source": "mqueue",
            "options": ["nosuid", "noexec", "nodev"],
        },
        {
            "destination": "/sys",
            "type": "sysfs",
            "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", "ro"],
        },
    ]


def make_bundle(
    bundle_dir: str,
    rootfs: str,
    image_config: dict,
    *,
    args: list[str] | None = None,
    env: list[str] | None = None,
    workdir: str | None = None,
    user: str | None = None,
    tty: bool = False,
    hostname: str = "layerctl",
) -> dict:
    """Write ``bundle_dir/config.json`` for running `image_config` in `rootfs`; return it."""
    cfg = image_config.get("config") or {}
    rootfs = os.path.abspath(rootfs)
    if not os.path.isdir(rootfs):
        raise NotFound(f"{rootfs}: container rootfs is not a directory")
    argv = process_args(image_config, args)
    cwd = workdir or cfg.get("WorkingDir") or "/"
    if not cwd.startswith("/"):
        raise BadInput(f"working directory {cwd!r} is not an absolute path")
    puser = resolve_user(rootfs, user if user is not None else cfg.get("User"))
    home = puser.pop("home")
    penv = merge_env(list(cfg.get("Env") or []), list(env or []))
    keys = {item.partition("=")[0] for item in penv}
    if "PATH" not in keys:
        penv.insert(0, f"PATH={DEFAULT_PATH}")
    if "HOSTNAME" not in keys:
        penv.append(f"HOSTNAME={hostname}")
    if "HOME" not in keys:
        penv.append(f"HOME={home}")
    if tty and "TERM" not in keys:
        penv.append("TERM=xterm")
    caps: dict[str, list[str]] = {"bounding": list(DEFAULT_CAPS)}
    if puser["uid"] == 0:
        caps["effective"] = list(DEFAULT_CAPS)
        caps["permitted"] = list(DEFAULT_CAPS)
    else:  # like Docker: a non-root user keeps the bounding set only
        caps["effective"] = []
        caps["permitted"] = []
    config = {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": bool(tty),
            "user": puser,
            "args": argv,
            "env": penv,
            "cwd": cwd,
            "capabilities": caps,
            # no "rlimits": the process keeps the limits it inherits
            "noNewPrivileges": False,
        },
        "root": {"path": rootfs, "readonly": False},
        "hostname": hostname,
        "mounts": _mounts(),
        "linux": {
            "namespaces": [
                {"type": "pid"},
                {"type": "ipc"},
                {"type": "uts"},
                {"type": "mount"},
                {"type": "network"},
            ],
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
        },
    }
    _mkdir_in_root(rootfs, cwd, puser["uid"], puser["gid"])
    os.makedirs(bundle_dir, mode=0o700, exist_ok=True)
    _write_json(os.path.join(bundle_dir, "config.json"), config)
    return config


def _mkdir_in_root(rootfs: str, path: str, uid: int, gid: int) -> None:
    """Create the working directory in the image if missing (as Docker does)."""
    from layerctl.beneath import GONE, Tree, fd_path

    rel = os.path.relpath(_resolve_in_root(rootfs, path), rootfs)
    if rel == ".":
        return
    # Made one directory at a time beneath the rootfs (O_NOFOLLOW): a symlink that
    # appears meanwhile fails the run instead of making a directory on the host.
    tree = Tree(os.fsencode(rootfs))
    try:
        done = b""
        parts = os.fsencode(rel).split(b"/")
        for i, part in enumerate(parts):
            here = done + b"/" + part if done else part
            made = False
            try:
                os.mkdir(part, 0o755, dir_fd=tree.dir_fd(done))
                made = True
            except FileExistsError:
                pass
            fd = tree.dir_fd(here)
            if made and i == len(parts) - 1:  # the working directory itself, as before
                try:
                    os.chown(fd_path(fd), uid, gid)
                except OSError:
                    pass
            done = here
    except OSError as e:
        if e.errno not in GONE:
            raise
        raise BadInput(f"cannot make the working directory {path} in the container: "
                       f"{e.strerror}") from None
    finally:
        tree.close()


def set_rootfs(bundle_dir: str, rootfs: str) -> dict:
    """Point an existing bundle at `rootfs` (a remount may move it); returns the spec."""
    path = os.path.join(bundle_dir, "config.json")
    spec = _read_json(path)
    if spec is None:
        raise NotFound(f"{bundle_dir}: no config.json")
    spec["root"]["path"] = os.path.abspath(rootfs)
    _write_json(path, spec)
    return spec


def _write_json(path: str, data: dict) -> None:
    write_json(path, data)


def _read_json(path: str) -> dict | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


# -- process records ----------------------------------------------------------------


def _alive(record: dict | None) -> bool:
    if not record or "pid" not in record:
        return False
    return start_time(record["pid"]) == record.get("start_time")


def _supervised(bundle_dir: str) -> bool:
    """A supervisor is still waiting for the container's process."""
    if os.path.exists(os.path.join(bundle_dir, "exit.json")):
        return False
    return _alive(_read_json(os.path.join(bundle_dir, "run.json")))


def _record_start(bundle_dir: str, rt: Runtime, container_id: str, detach: bool) -> None:
    try:
        os.unlink(os.path.join(bundle_dir, "exit.json"))
    except FileNotFoundError:
        pass
    pid = os.getpid()
    _write_json(
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


def _record_exit(bundle_dir: str, code: int) -> None:
    _write_json(os.path.join(bundle_dir, "exit.json"), {"exit_code": code, "finished": time.time()})


def _exit_code(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


# -- running ----------------------------------------------------------------------


def _supervise(
    rt: Runtime, container_id: str, bundle_dir: str, detach: bool, interactive: bool = True
) -> int:
    """Run the container's process to its end and record its exit code."""
    _record_start(bundle_dir, rt, container_id, detach)
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
        _record_exit(bundle_dir, code)
    return code


def _wait_forwarding(proc: subprocess.Popen) -> int:
    """Wait for the runtime, passing SIGTERM/SIGHUP/SIGQUIT on to it. SIGINT from
    the terminal already reaches the runtime (same process group): ignore it here."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return _exit_code(proc.wait())

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
                return _exit_code(proc.wait())
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
    process = (_read_json(os.path.join(bundle_dir, "config.json")) or {}).get("process", {})
    if process.get("terminal"):
        raise BadInput("a detached container cannot have a terminal (bundle made with tty=True)")
    hook = os.path.join(bundle_dir, "on-exit.json")
    if on_exit:
        _write_json(hook, {"argv": list(on_exit), "remove_bundle": remove_bundle})
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
        ended = _read_json(os.path.join(bundle_dir, "exit.json"))
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
    hook = _read_json(os.path.join(bundle_dir, "on-exit.json"))
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


def state(runtime: Runtime, container_id: str) -> dict | None:
    """The runtime's state of the container (``status``: created, running,
    stopped, paused; ``pid``), or None when the runtime does not know it."""
    r = subprocess.run(
        runtime.command("state", container_id), capture_output=True, text=True,
        stdin=subprocess.DEVNULL,
    )
    if r.returncode != 0:
        return None
    try:
        return json.loads(r.stdout)
    except ValueError:
        return None


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
    return bundle_dir is not None and _supervised(bundle_dir)


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
        while _supervised(bundle_dir) and time.monotonic() < deadline:
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


# -- status for `ps` ----------------------------------------------------------------


def status(store: Any, container_id: str) -> tuple[str, int | None]:
    """("created" | "running" | "exited", exit code) of a container's process.

    Reads only the records in the bundle dir (cheap; no runtime needed) unless
    the supervisor died without recording an exit, then asks the runtime."""
    bundle_dir = bundle_path(store, container_id)
    ended = _read_json(os.path.join(bundle_dir, "exit.json"))
    record = _read_json(os.path.join(bundle_dir, "run.json"))
    if ended is not None:
        return "exited", ended.get("exit_code")
    if record is None:
        return "created", None
    if _alive(record):
        return "running", None
    try:
        st = state(Runtime(record["runtime"], record["root"]), container_id)
    except (OSError, KeyError):
        st = None
    if st is not None and st.get("status") in ("created", "running", "paused"):
        return "running", None
    return "exited", None


def log_path(store: Any, container_id: str) -> str:
    return os.path.join(bundle_path(store, container_id), "container.log")


def runtime_of(store: Any, container_id: str) -> Runtime:
    """The runtime that last ran the container (exec and stop must use the same
    one and the same state root), else the default runtime."""
    record = _read_json(os.path.join(bundle_path(store, container_id), "run.json"))
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
        record = _read_json(os.path.join(bundle_dir, "run.json"))
        if record and record.get("runtime") and os.path.exists(record["runtime"]):
            delete(Runtime(record["runtime"], record["root"]), container_id, force=True)
    shutil.rmtree(bundle_dir, ignore_errors=True)


def _main(argv: list[str]) -> None:
    if len(argv) == 5 and argv[0] == "supervise":
        _daemon_main(*argv[1:])
    print("usage: python -m layerctl.runtime supervise RUNTIME ROOT ID BUNDLE", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    _main(sys.argv[1:])
