"""Processes in containers: run, exec, start, stop, through the OCI runtime
(layerctl.runtime). The CLI and the TUI call these; a script can too."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from layerctl import runtime
from layerctl.errors import BadInput, LayerctlError, NotFound

from .lifecycle import create, mount, remove, root_dir
from .state import Container, base, resolve

if TYPE_CHECKING:
    from layerctl.store.repo import Store


@dataclass
class Process:
    """What to run and how: the image's command and settings unless given."""

    args: list[str] | None = None  # None: the image's entrypoint and cmd
    env: list[str] = field(default_factory=list)
    workdir: str | None = None
    user: str | None = None
    tty: bool = False
    interactive: bool = False


def check_tty(tty: bool) -> None:
    """-t needs a terminal on stdin, as with Docker."""
    if tty and not sys.stdin.isatty():
        raise BadInput("the input device is not a TTY (drop -t)")


def _bundle(store: Store, c: Container, rootfs: str, p: Process) -> str:
    from layerctl.store.layers import read_layer

    bundle = runtime.bundle_path(store, c.id)
    runtime.make_bundle(
        bundle, rootfs, read_layer(store, base(store, c)).config, args=p.args, env=p.env,
        workdir=p.workdir, user=p.user, tty=p.tty, hostname=c.id[:12],
    )
    return bundle


def run(
    store: Store,
    image: str,
    p: Process,
    *,
    name: str | None = None,
    driver: str | None = None,
    detach: bool = False,
    remove_after: bool = False,
    remover: list[str] | None = None,
    notice: Callable[[str], None] | None = None,
) -> tuple[Container, int | None]:
    """Create a container from `image`, mount it and run `p` in it. In the foreground
    returns the exit code (the container removed first with `remove_after`); detached,
    None once it runs (`remover`: the command that, given the container's id, removes
    it when it exits, for `remove_after`). A container that never ran is removed again."""
    if not detach:
        check_tty(p.tty)
    rt = runtime.runtime_for(store)  # no runtime: say so before creating anything
    c, why = create(store, image, name, driver)
    if why and notice is not None:
        notice(why)
    ran = False
    try:
        rootfs = mount(store, c.id)
        bundle = _bundle(store, c, rootfs, Process(
            p.args, p.env, p.workdir, p.user, p.tty and not detach, p.interactive))
        if detach:
            on_exit = [*remover, c.id] if remove_after and remover else None
            runtime.run(rt, c.id, bundle, detach=True, on_exit=on_exit,
                        remove_bundle=remove_after)
            ran = True
            return c, None
        ran = True
        code = runtime.run(rt, c.id, bundle, tty=p.tty, interactive=p.interactive)
    except BaseException:
        if not ran:  # nothing ran: leave no half-made container behind
            discard(store, c.id)
        raise
    if remove_after:
        discard(store, c.id)
    return c, code


def discard(store: Store, cid: str) -> None:
    """Forget the runtime's state of a container and remove it."""
    runtime.forget(store, cid, force=True)
    try:
        remove(store, cid, force=True)
    except NotFound:
        pass


def exec_in(store: Store, ref: str, p: Process, *, detach: bool = False) -> int:
    """Run `p` (args required) in the running container `ref`; its exit code."""
    if not detach:
        check_tty(p.tty)
    c = resolve(store, ref)
    if runtime.status(store, c.id)[0] != "running":
        raise LayerctlError(f"container {ref} is not running")
    rt = runtime.runtime_of(store, c.id)
    return runtime.exec_(
        rt, c.id, list(p.args or ()), env=p.env, workdir=p.workdir, user=p.user,
        tty=p.tty and not detach, rootfs=root_dir(store, c), detach=detach,
    )


def start(store: Store, ref: str, *, attach: bool = False,
          interactive: bool = False) -> int | None:
    """Start a stopped (or created) container again with the command it last ran (the
    image's, if it never ran). Attached: its exit code; else None (also when it was
    running already: a no-op, as in Docker)."""
    rt = runtime.runtime_for(store)
    c = resolve(store, ref)
    if runtime.status(store, c.id)[0] == "running":
        return None
    rootfs = mount(store, c.id)
    bundle = runtime.bundle_path(store, c.id)
    if os.path.isfile(os.path.join(bundle, "config.json")):
        # The rootfs may have moved since the last run; the process settings stay.
        spec = runtime.set_rootfs(bundle, rootfs)
        tty = bool(spec.get("process", {}).get("terminal"))
        if tty and not attach:
            raise BadInput(f"{ref} runs with a terminal: start it with -a -i")
        if tty:
            check_tty(True)
    else:  # created with `layerctl create`: run the image's default command
        tty = False
        _bundle(store, c, rootfs, Process())
    if attach:
        return runtime.run(rt, c.id, bundle, tty=tty, interactive=interactive)
    runtime.run(rt, c.id, bundle, detach=True)
    return None


def stop(store: Store, ref: str, timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL after `timeout` seconds; nothing if it is not running."""
    c = resolve(store, ref)
    if runtime.status(store, c.id)[0] == "running":
        runtime.stop(runtime.runtime_of(store, c.id), c.id, timeout,
                     runtime.bundle_path(store, c.id))
