"""The OCI runtime bundle: config.json from an image config (process, env, user,
capabilities, namespaces, mounts, masked paths)."""

from __future__ import annotations

import os

from layerctl.atomic import write_json
from layerctl.errors import BadInput, NotFound
from layerctl.runtime.records import read_json
from layerctl.runtime.users import resolve_in_root, resolve_user

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


# How long `run --detach` waits for the container to come up.


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
    write_json(os.path.join(bundle_dir, "config.json"), config)
    return config


def _mkdir_in_root(rootfs: str, path: str, uid: int, gid: int) -> None:
    """Create the working directory in the image if missing (as Docker does)."""
    from layerctl.beneath import GONE, Tree, fd_path

    rel = os.path.relpath(resolve_in_root(rootfs, path), rootfs)
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
    spec = read_json(path)
    if spec is None:
        raise NotFound(f"{bundle_dir}: no config.json")
    spec["root"]["path"] = os.path.abspath(rootfs)
    write_json(path, spec)
    return spec


