"""The `layerctl` command: a lazy click group (fast start-up). The error contract is
cli/contract.py; the plain read commands that skip click are cli/entry.py.
"""

from __future__ import annotations

import importlib
import sys

import click

from layerctl.cli.contract import guarded

# name -> (module, function, short help). Modules load only when their command runs.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "import": (
        "layerctl.cli.images",
        "import_cmd",
        "Import a root filesystem (dir or tar) as an image",
    ),
    "images": ("layerctl.cli.images", "images_cmd", "List images"),
    "tag": ("layerctl.cli.images", "tag_cmd", "Tag an image or layer"),
    "rmi": ("layerctl.cli.images", "rmi_cmd", "Remove image tags"),
    "inspect": ("layerctl.cli.images", "inspect_cmd", "Show an image, layer or container as JSON"),
    "history": ("layerctl.cli.images", "history_cmd", "Show an image's layers, Docker style"),
    "log": ("layerctl.cli.layers", "log_cmd", "Show layer history, git style"),
    "show": ("layerctl.cli.layers", "show_cmd", "Show a layer and its changes, or a file in it"),
    "diff": ("layerctl.cli.layers", "diff_cmd", "Show changes between layers (or of a container)"),
    "checkout": ("layerctl.cli.layers", "checkout_cmd", "Write a layer's full filesystem to a dir"),
    "fsck": ("layerctl.cli.layers", "fsck_cmd", "Verify every object and record in the store"),
    # path history (layerctl/cli/insight_blame.py)
    "blame": (
        "layerctl.cli.insight_blame",
        "blame_cmd",
        "Show which layers added, changed or deleted paths",
    ),
    "bisect": (
        "layerctl.cli.insight_blame",
        "bisect_cmd",
        "Find the layer that broke something, by binary search",
    ),
    # containers (layerctl/cli/containers.py)
    "create": ("layerctl.cli.containers", "create_cmd", "Create a container from an image"),
    "ps": ("layerctl.cli.containers", "ps_cmd", "List containers"),
    "mount": ("layerctl.cli.containers", "mount_cmd", "Mount a container; print its merged dir"),
    "umount": ("layerctl.cli.containers", "umount_cmd", "Unmount a container"),
    "rm": ("layerctl.cli.containers", "rm_cmd", "Remove containers"),
    "status": ("layerctl.cli.containers", "status_cmd", "Show a container's pending changes"),
    "commit": ("layerctl.cli.containers", "commit_cmd", "Commit a container's changes as a layer"),
    "restore": ("layerctl.cli.containers", "restore_cmd", "Discard pending changes to paths"),
    "reset": (
        "layerctl.cli.containers",
        "reset_cmd",
        "Move a container to a layer, dropping changes",
    ),
    # processes (layerctl/cli/run.py)
    "run": ("layerctl.cli.run", "run_cmd", "Run a command in a new container"),
    "exec": ("layerctl.cli.run", "exec_cmd", "Run a command in a running container"),
    "start": ("layerctl.cli.run", "start_cmd", "Start a stopped container"),
    "stop": ("layerctl.cli.run", "stop_cmd", "Stop a running container"),
    "logs": ("layerctl.cli.run", "logs_cmd", "Show a container's output"),
    # interchange (layerctl/cli/interchange.py)
    "load": (
        "layerctl.cli.interchange",
        "load_cmd",
        "Load images from a docker-archive or OCI layout",
    ),
    "save": (
        "layerctl.cli.interchange",
        "save_cmd",
        "Save images as a docker-archive or OCI layout",
    ),
    "export": (
        "layerctl.cli.interchange",
        "export_cmd",
        "Export a container's or layer's filesystem as a tar",
    ),
    "track": (
        "layerctl.cli.interchange",
        "track_cmd",
        "Track a podman/docker container's changes in place",
    ),
    # sharing (layerctl/cli/share.py)
    "pull": ("layerctl.cli.share", "pull_cmd", "Pull an image from a registry"),
    "push": ("layerctl.cli.share", "push_cmd", "Push an image to a registry or a git remote"),
    "login": ("layerctl.cli.share", "login_cmd", "Log in to a registry"),
    "logout": ("layerctl.cli.share", "logout_cmd", "Log out from a registry"),
    "remote": ("layerctl.cli.share", "remote_cmd", "Manage git remotes"),
    "fetch": ("layerctl.cli.share", "fetch_cmd", "Fetch images and layers from a git remote"),
    # insight (layerctl/cli/insight.py)
    "waste": ("layerctl.cli.insight", "waste_cmd", "Show wasted space per path, class and layer"),
    "efficiency": ("layerctl.cli.insight", "waste_cmd", "Alias of waste (dive's score, corrected)"),
    # disk usage and prune (layerctl/cli/system.py)
    "system": ("layerctl.cli.system", "system_cmd", "Show disk usage (df) and prune"),
    "container": ("layerctl.cli.system", "container_cmd", "Manage containers (prune)"),
    "image": ("layerctl.cli.system", "image_cmd", "Manage images (prune)"),
    # history editing (layerctl/cli/history_edit.py)
    "rebase": ("layerctl.cli.history_edit", "rebase_cmd", "Replay layers on a new base; -i edits"),
    "cherry-pick": ("layerctl.cli.history_edit", "cherry_pick_cmd", "Apply a layer's changes"),
    "revert": ("layerctl.cli.history_edit", "revert_cmd", "Apply the inverse of a layer"),
    "squash": ("layerctl.cli.history_edit", "squash_cmd", "Fold a range of layers into one"),
    "split": ("layerctl.cli.history_edit", "split_cmd", "Move paths of a layer to their own"),

    # nothing is lost (layerctl/cli/undo.py)
    "reflog": ("layerctl.cli.undo", "reflog_cmd", "Show where tags and container bases have been"),
    "undo": ("layerctl.cli.undo", "undo_cmd", "Bring back the state before the last command"),
    "stash": ("layerctl.cli.undo", "stash_cmd", "Save a container's pending changes for later"),
    # terminal UI (layerctl/cli/tui.py)
    "tui": ("layerctl.cli.tui", "tui_cmd", "Open the terminal UI"),
    "demo": ("layerctl.cli.tui", "demo_cmd", "Build a sample image and container and open the UI"),
}

_root: str | None = None  # the store the command was given, for errors main() reports

# Short options that take a value: Docker (pflag) accepts `-m=msg`; click would keep the '='.
_VALUE_SHORT_OPTS = set("mavcnoiewutfp")


def _docker_style(args: list[str]) -> list[str]:
    out = []
    for arg in args:
        if arg == "--":
            out.extend(args[len(out) :])
            return out
        if len(arg) > 3 and arg[0] == "-" and arg[1] in _VALUE_SHORT_OPTS and arg[2] == "=":
            out.extend((arg[:2], arg[3:]))
        else:
            out.append(arg)
    return out


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in sorted(COMMANDS)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, _docker_style(args))


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--root", envvar="LAYERCTL_ROOT", help="Store directory (default: XDG data dir).")
@click.version_option(package_name="layerctl")
@click.pass_context
def cli(ctx: click.Context, root: str | None) -> None:
    """layerctl: git for container filesystems."""
    global _root
    ctx.obj = {"root": root}
    _root = root


def main(argv: list[str] | None = None) -> None:
    """Parse the command line with click and run it under the error contract
    (cli/contract.py; cli/entry.py runs the plain read commands without click)."""
    args = sys.argv[1:] if argv is None else argv
    guarded(args, lambda: _run(args), lambda: _root)


def _run(args: list[str]) -> None:
    try:
        cli.main(args=args, prog_name="layerctl", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("layerctl: aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
