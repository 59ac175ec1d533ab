"""Process commands: run, exec, start, stop, logs (through crun/runc, see layerctl.runtime)."""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING

import click

from layerctl.cli.common import open_store
from layerctl.errors import BadInput, LayerctlError, NotFound

if TYPE_CHECKING:
    from layerctl.store.repo import Store

_CONTEXT = {"ignore_unknown_options": False, "allow_interspersed_args": False}


def _containers():  # noqa: ANN202 - the layerctl.containers module, imported lazily
    import layerctl.containers as containers

    return containers


def _image_config(store: Store, container: object) -> dict:
    from layerctl.containers.state import base
    from layerctl.store.layers import read_layer

    return read_layer(store, base(store, container)).config


def _check_tty(tty: bool) -> None:
    if tty and not sys.stdin.isatty():
        raise BadInput("the input device is not a TTY (drop -t)")


def _self_argv(store: Store) -> list[str]:
    """`layerctl --root ROOT` as a command the supervisor can run later."""
    pkg_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    code = (
        "import sys; sys.path.insert(0, sys.argv.pop(1)); "
        "from layerctl.cli.main import main; main(sys.argv[1:])"
    )
    return [sys.executable, "-c", code, pkg_parent, "--root", store.root]


def _bundle_for(
    store: Store,
    container: object,
    rootfs: str,
    *,
    args: list[str] | None,
    env: list[str],
    workdir: str | None,
    user: str | None,
    tty: bool,
) -> str:
    from layerctl import runtime

    bundle = runtime.bundle_path(store, container.id)
    runtime.make_bundle(
        bundle, rootfs, _image_config(store, container), args=args, env=env, workdir=workdir,
        user=user, tty=tty, hostname=container.id[:12],
    )
    return bundle


@click.command("run", context_settings=_CONTEXT)
@click.option("-i", "--interactive", is_flag=True, help="Keep stdin open.")
@click.option("-t", "--tty", is_flag=True, help="Allocate a terminal.")
@click.option("-d", "--detach", is_flag=True, help="Run in the background; print the id.")
@click.option("--rm", "remove", is_flag=True, help="Remove the container when it exits.")
@click.option("--name", default=None, help="Name of the container.")
@click.option("-e", "--env", multiple=True, help="Set an environment variable (K=V, or K).")
@click.option("-w", "--workdir", default=None, help="Working directory inside the container.")
@click.option("-u", "--user", default=None, help="user[:group], names or numeric ids.")
@click.option("--driver", default=None, help="Storage driver: overlay or vfs.")
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def run_cmd(
    ctx: click.Context,
    interactive: bool,
    tty: bool,
    detach: bool,
    remove: bool,
    name: str | None,
    env: tuple[str, ...],
    workdir: str | None,
    user: str | None,
    driver: str | None,
    image: str,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND (default: the image's) in a new container made from IMAGE."""
    from layerctl import runtime

    if not detach:
        _check_tty(tty)
    store = open_store(ctx)
    rt = runtime.runtime_for(store)  # no runtime: say so before creating anything
    containers = _containers()
    c, notice = containers.create(store, image, name, driver)
    if notice:
        click.echo(f"layerctl: {notice}", err=True)
    started = False
    try:
        rootfs = containers.mount(store, c.id)
        bundle = _bundle_for(
            store, c, rootfs, args=list(command) or None, env=list(env), workdir=workdir,
            user=user, tty=tty and not detach,
        )
        if detach:
            on_exit = [*_self_argv(store), "rm", "-f", c.id] if remove else None
            runtime.run(rt, c.id, bundle, detach=True, on_exit=on_exit, remove_bundle=remove)
            started = True
            click.echo(c.id)
            return
        started = True
        code = runtime.run(rt, c.id, bundle, tty=tty, interactive=interactive)
    except BaseException:
        if not started:  # nothing ran: leave no half-made container behind
            _remove(store, c.id)
        raise
    if remove:
        _remove(store, c.id)
    sys.exit(code)  # main() drops a click Exit code in non-standalone mode


def _remove(store: Store, cid: str) -> None:
    from layerctl import runtime

    runtime.forget(store, cid, force=True)
    try:
        _containers().remove(store, cid, force=True)
    except NotFound:
        pass


@click.command("exec", context_settings=_CONTEXT)
@click.option("-i", "--interactive", is_flag=True, help="Keep stdin open.")
@click.option("-t", "--tty", is_flag=True, help="Allocate a terminal.")
@click.option("-d", "--detach", is_flag=True, help="Run the command in the background.")
@click.option("-e", "--env", multiple=True, help="Set an environment variable (K=V, or K).")
@click.option("-w", "--workdir", default=None, help="Working directory inside the container.")
@click.option("-u", "--user", default=None, help="user[:group], names or numeric ids.")
@click.argument("container")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def exec_cmd(
    ctx: click.Context,
    interactive: bool,
    tty: bool,
    detach: bool,
    env: tuple[str, ...],
    workdir: str | None,
    user: str | None,
    container: str,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND in the running CONTAINER."""
    from layerctl import runtime

    if not detach:
        _check_tty(tty)
    store = open_store(ctx)
    containers = _containers()
    c = containers.resolve(store, container)
    if runtime.status(store, c.id)[0] != "running":
        raise LayerctlError(f"container {container} is not running")
    rt = runtime.runtime_of(store, c.id)
    code = runtime.exec_(
        rt, c.id, list(command), env=list(env), workdir=workdir, user=user,
        tty=tty and not detach, rootfs=containers.root_dir(store, c), detach=detach,
    )
    sys.exit(code)  # main() drops a click Exit code in non-standalone mode


@click.command("start")
@click.option("-a", "--attach", is_flag=True, help="Run in the foreground, with its output.")
@click.option("-i", "--interactive", is_flag=True, help="Attach stdin (with -a).")
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def start_cmd(
    ctx: click.Context, attach: bool, interactive: bool, containers: tuple[str, ...]
) -> None:
    """Start stopped (or created) containers again, with the command they last ran."""
    from layerctl import runtime

    store = open_store(ctx)
    api = _containers()
    rt = runtime.runtime_for(store)
    if attach and len(containers) > 1:
        raise BadInput("you cannot start and attach multiple containers at once")
    for ref in containers:
        c = api.resolve(store, ref)
        if runtime.status(store, c.id)[0] == "running":
            click.echo(ref)  # like Docker: starting a running container is a no-op
            continue
        rootfs = api.mount(store, c.id)
        bundle = runtime.bundle_path(store, c.id)
        if os.path.isfile(os.path.join(bundle, "config.json")):
            # The rootfs may have moved since the last run; the process settings stay.
            spec = runtime.set_rootfs(bundle, rootfs)
            tty = bool(spec.get("process", {}).get("terminal"))
            if tty and not attach:
                raise BadInput(f"{ref} runs with a terminal: start it with -a -i")
            if tty:
                _check_tty(True)
        else:  # created with `layerctl create`: run the image's default command
            tty = False
            _bundle_for(store, c, rootfs, args=None, env=[], workdir=None, user=None, tty=False)
        if attach:
            code = runtime.run(rt, c.id, bundle, tty=tty, interactive=interactive)
            sys.exit(code)  # main() drops a click Exit code in non-standalone mode
        runtime.run(rt, c.id, bundle, detach=True)
        click.echo(ref)


@click.command("stop")
@click.option("-t", "--time", "timeout", default=10, show_default=True, type=float,
              help="Seconds to wait for SIGTERM before SIGKILL.")
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def stop_cmd(ctx: click.Context, timeout: float, containers: tuple[str, ...]) -> None:
    """Stop running containers: SIGTERM, then SIGKILL after the timeout."""
    from layerctl import runtime

    store = open_store(ctx)
    api = _containers()
    for ref in containers:
        c = api.resolve(store, ref)
        if runtime.status(store, c.id)[0] == "running":
            runtime.stop(runtime.runtime_of(store, c.id), c.id, timeout,
                         runtime.bundle_path(store, c.id))
        click.echo(ref)


@click.command("logs")
@click.option("-f", "--follow", is_flag=True, help="Keep printing output as it comes.")
@click.argument("container")
@click.pass_context
def logs_cmd(ctx: click.Context, follow: bool, container: str) -> None:
    """Show the output of a detached container (foreground runs print to the terminal)."""
    from layerctl import runtime

    store = open_store(ctx)
    c = _containers().resolve(store, container)
    path = runtime.log_path(store, c.id)
    if not os.path.exists(path):
        return
    out = sys.stdout.buffer
    with open(path, "rb") as f:
        while True:
            chunk = f.read(65536)
            if chunk:
                out.write(chunk)
                continue
            out.flush()
            if not follow or runtime.status(store, c.id)[0] != "running":
                rest = f.read()  # anything written between the read and the check
                out.write(rest)
                out.flush()
                return
            time.sleep(0.2)
