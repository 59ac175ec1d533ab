"""Process commands: run, exec, start, stop, logs (through crun/runc, see layerctl.runtime)."""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING

import click

from layerctl.cli.common import open_store
from layerctl.errors import BadInput

if TYPE_CHECKING:
    pass

_CONTEXT = {"ignore_unknown_options": False, "allow_interspersed_args": False}


def _self_argv(store: object) -> list[str]:
    """`layerctl --root ROOT` as a command the supervisor can run later."""
    pkg_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    code = (
        "import sys; sys.path.insert(0, sys.argv.pop(1)); "
        "from layerctl.cli.main import main; main(sys.argv[1:])"
    )
    return [sys.executable, "-c", code, pkg_parent, "--root", store.root]


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
    from layerctl.containers.process import Process, run

    store = open_store(ctx)
    c, code = run(
        store, image, Process(list(command) or None, list(env), workdir, user, tty, interactive),
        name=name, driver=driver, detach=detach, remove_after=remove,
        remover=[*_self_argv(store), "rm", "-f"], notice=lambda why: click.echo(
            f"layerctl: {why}", err=True),
    )
    if code is None:
        click.echo(c.id)
        return
    sys.exit(code)  # main() drops a click Exit code in non-standalone mode


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
    from layerctl.containers.process import Process, exec_in

    code = exec_in(open_store(ctx), container,
                   Process(list(command), list(env), workdir, user, tty, interactive),
                   detach=detach)
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
    from layerctl.containers.process import start

    store = open_store(ctx)
    if attach and len(containers) > 1:
        raise BadInput("you cannot start and attach multiple containers at once")
    for ref in containers:
        code = start(store, ref, attach=attach, interactive=interactive)
        if attach and code is not None:
            sys.exit(code)  # main() drops a click Exit code in non-standalone mode
        click.echo(ref)


@click.command("stop")
@click.option("-t", "--time", "timeout", default=10, show_default=True, type=float,
              help="Seconds to wait for SIGTERM before SIGKILL.")
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def stop_cmd(ctx: click.Context, timeout: float, containers: tuple[str, ...]) -> None:
    """Stop running containers: SIGTERM, then SIGKILL after the timeout."""
    from layerctl.containers.process import stop

    store = open_store(ctx)
    for ref in containers:
        stop(store, ref, timeout)
        click.echo(ref)


@click.command("logs")
@click.option("-f", "--follow", is_flag=True, help="Keep printing output as it comes.")
@click.argument("container")
@click.pass_context
def logs_cmd(ctx: click.Context, follow: bool, container: str) -> None:
    """Show the output of a detached container (foreground runs print to the terminal)."""
    from layerctl import runtime
    from layerctl.containers.state import resolve

    store = open_store(ctx)
    c = resolve(store, container)
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
