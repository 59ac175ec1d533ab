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

from typing import TYPE_CHECKING

from layerctl.lazy import attribute_getter

if TYPE_CHECKING:  # what the checker sees; at run time __getattr__ imports each name
    from layerctl.runtime.control import (
        delete,
        forget,
        is_running,
        kill,
        list_containers,
        log_path,
        runtime_of,
        stop,
    )
    from layerctl.runtime.find import NO_RUNTIME, Runtime, find_runtime, runtime_for
    from layerctl.runtime.process import state, status
    from layerctl.runtime.records import bundle_path
    from layerctl.runtime.spec import (
        DEFAULT_CAPS,
        DEFAULT_PATH,
        MASKED_PATHS,
        READONLY_PATHS,
        make_bundle,
        merge_env,
        process_args,
        set_rootfs,
    )
    from layerctl.runtime.supervise import START_TIMEOUT, exec_, run
    from layerctl.runtime.users import USER_DB_LIMIT, resolve_user

# The package's API, each name with the module it lives in. A name is imported when
# first used (PEP 562): `ps` reads two JSON records (records.py, process.py) and must
# not pay for supervise/spec/find/subprocess at start-up.
_HOMES = {
    "delete": "control", "forget": "control", "is_running": "control", "kill": "control",
    "list_containers": "control", "log_path": "control", "runtime_of": "control",
    "stop": "control",
    "state": "process", "status": "process",
    "bundle_path": "records",
    "NO_RUNTIME": "find", "Runtime": "find", "find_runtime": "find", "runtime_for": "find",
    "DEFAULT_CAPS": "spec", "DEFAULT_PATH": "spec", "MASKED_PATHS": "spec",
    "READONLY_PATHS": "spec", "make_bundle": "spec", "merge_env": "spec",
    "process_args": "spec", "set_rootfs": "spec",
    "START_TIMEOUT": "supervise", "exec_": "supervise", "run": "supervise",
    "USER_DB_LIMIT": "users", "resolve_user": "users",
}
__all__ = [
    "DEFAULT_CAPS", "DEFAULT_PATH", "MASKED_PATHS", "NO_RUNTIME", "READONLY_PATHS",
    "Runtime", "START_TIMEOUT", "USER_DB_LIMIT", "bundle_path", "delete", "exec_",
    "find_runtime", "forget", "is_running", "kill", "list_containers", "log_path",
    "make_bundle", "merge_env", "process_args", "resolve_user", "run", "runtime_for",
    "runtime_of", "set_rootfs", "state", "status", "stop",
]


__getattr__ = attribute_getter(__name__, _HOMES, globals())


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
