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

from layerctl.runtime.control import (  # noqa: F401 - the package's API
    delete,
    forget,
    is_running,
    kill,
    list_containers,
    log_path,
    runtime_of,
    state,
    status,
    stop,
)
from layerctl.runtime.find import (  # noqa: F401 - the package's API
    NO_RUNTIME,
    Runtime,
    bundle_path,
    find_runtime,
    runtime_for,
)
from layerctl.runtime.spec import (  # noqa: F401 - the package's API
    DEFAULT_CAPS,
    DEFAULT_PATH,
    MASKED_PATHS,
    READONLY_PATHS,
    make_bundle,
    merge_env,
    process_args,
    set_rootfs,
)
from layerctl.runtime.supervise import (  # noqa: F401 - the package's API
    START_TIMEOUT,
    exec_,
    run,
)
from layerctl.runtime.users import (  # noqa: F401 - the package's API
    USER_DB_LIMIT,
    resolve_user,
)
