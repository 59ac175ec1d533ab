"""History editing commands: rebase (replay, swap, -i), cherry-pick, revert, squash, split
(core: layerctl.rewrite, layerctl.merge)."""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile

import click

from layerctl.cli.common import open_store
from layerctl.errors import BadInput

_SETTINGS = {"help_option_names": ["-h", "--help"]}


def run_editor(text: str) -> str:
    """Edit `text` in $VISUAL / $EDITOR (vi), as git does; returns what was saved."""
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    fd, path = tempfile.mkstemp(prefix="layerctl-edit-", suffix=".txt")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        rc = subprocess.run([*shlex.split(editor), path]).returncode
        if rc != 0:
            raise BadInput(f"the editor ({editor}) exited with code {rc}; nothing changed")
        with open(path, encoding="utf-8") as f:
            return f.read()
    finally:
        os.unlink(path)


def _message_from_editor(text: str) -> str:
    kept = [line for line in run_editor(text + "\n# Edit the layer's message; lines "
                                        "starting with # are dropped.\n").splitlines()
            if not line.startswith("#")]
    return "\n".join(kept).strip()


@click.command("rebase", context_settings=_SETTINGS)
@click.argument("target", required=False, metavar="[IMAGE|CONTAINER]")
@click.option("--onto", "onto", metavar="NEWBASE", help="The image or layer to put under it.")
@click.option("--base", "base", metavar="OLDBASE",
              help="Where the base ends (default: a previous rebase's base, else the nearest "
                   "layer that tops an imported or pulled image).")
@click.option("--mode", type=click.Choice(["replay", "swap"]), default="replay",
              show_default=True, help="replay: three-way merge of each layer; swap: crane's "
                                      "blind swap (same changesets), conflicts as warnings.")
@click.option("--in-place", is_flag=True,
              help="Move IMAGE's own tag (default: tag the result IMAGE-rebased).")
@click.option("-t", "--tag", metavar="NAME:TAG", help="Tag the result NAME:TAG.")
@click.option("-i", "--interactive", is_flag=True,
              help="Edit the todo list (pick, reword, edit, squash, fixup, drop, reorder).")
@click.option("--force", is_flag=True, help="Rebase even across os/architecture.")
@click.option("--continue", "cont", is_flag=True, help="Go on after resolving or editing.")
@click.option("--abort", is_flag=True, help="Restore everything as it was before.")
@click.option("--skip", is_flag=True, help="Drop the layer that conflicts and go on.")
@click.pass_context
def rebase_cmd(ctx: click.Context, target: str | None, onto: str | None, base: str | None,
               mode: str, in_place: bool, tag: str | None, interactive: bool, force: bool,
               cont: bool, abort: bool, skip: bool) -> None:
    """Replay IMAGE's (or CONTAINER's) layers above its base onto NEWBASE.

    The result is tagged IMAGE-rebased (IMAGE keeps its layers) unless --in-place or
    -t; a container moves onto the new base with its pending changes replayed. Each new
    layer records the layer it came from (Rebased-From trailer). On a conflict the
    rebase stops: resolve in the container it names, then --continue.
    """
    from layerctl import rewrite

    store = open_store(ctx)
    flags = [f for f, on in (("--continue", cont), ("--abort", abort), ("--skip", skip)) if on]
    if len(flags) > 1:
        raise BadInput(f"use only one of {', '.join(flags)}")
    if flags:
        if target or onto:
            raise BadInput(f"{flags[0]} takes no IMAGE or --onto")
        if abort:
            click.echo(rewrite.abort(store))
            return
        out = (rewrite.continue_ if cont else rewrite.skip)(store, _message_from_editor)
        click.echo(out.message)
        return
    if not target:
        raise BadInput("name the IMAGE or CONTAINER to rebase")
    if interactive:
        if onto:
            raise BadInput("-i edits the layers in place: --onto is not supported with it")
        out = rewrite.interactive(store, target, base, _interactive_editor)
    else:
        if not onto:
            raise BadInput("name the new base: --onto NEWBASE")
        out = rewrite.rebase(store, target, onto, base, mode, in_place, tag, force)
    click.echo(out.message)


def _interactive_editor(text: str) -> str:
    # The first call edits the todo list; later ones (reword) a message.
    if text.startswith(("pick ", "\n# Rebase")):
        return run_editor(text)
    return _message_from_editor(text)


@click.command("cherry-pick", context_settings=_SETTINGS)
@click.argument("layer")
@click.option("--onto", metavar="IMAGE|CONTAINER",
              help="Where to apply it (an image's tag moves; a container keeps its changes; "
                   "default: the only container).")
@click.pass_context
def cherry_pick_cmd(ctx: click.Context, layer: str, onto: str | None) -> None:
    """Apply LAYER's changeset onto an image or container, by three-way merge."""
    from layerctl import rewrite

    store = open_store(ctx)
    if onto is None:
        from layerctl.cli.containers import _default_container

        onto = _default_container(store, None)
    click.echo(rewrite.cherry_pick(store, layer, onto).message)


@click.command("revert", context_settings=_SETTINGS)
@click.argument("layer")
@click.option("--onto", metavar="IMAGE|CONTAINER",
              help="Where to apply the inverse (default: the image holding LAYER).")
@click.pass_context
def revert_cmd(ctx: click.Context, layer: str, onto: str | None) -> None:
    """Apply the inverse of LAYER's changeset as a new layer, by three-way merge."""
    from layerctl import rewrite

    store = open_store(ctx)
    if onto is None:
        from layerctl.images import resolve

        onto = rewrite.image_holding(store, resolve(store, layer))
    click.echo(rewrite.revert(store, layer, onto).message)


@click.command("squash", context_settings=_SETTINGS)
@click.argument("image")
@click.argument("span", required=False, metavar="[FROM..TO]")
@click.pass_context
def squash_cmd(ctx: click.Context, image: str, span: str | None) -> None:
    """Fold layers into one: FROM..TO are the layers after FROM up to TO (git's range);
    default every layer above the image's base. IMAGE's tag moves."""
    from layerctl import rewrite

    click.echo(rewrite.squash(open_store(ctx), image, span).message)


class _SplitCommand(click.Command):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            i = args.index("--")
            ctx.meta["split_paths"] = args[i + 1:]
            args = args[:i]
        return super().parse_args(ctx, args)


@click.command("split", cls=_SplitCommand, context_settings=_SETTINGS)
@click.argument("layer")
@click.option("--image", metavar="IMAGE", help="The image to rewrite (default: the one "
                                               "holding LAYER).")
@click.pass_context
def split_cmd(ctx: click.Context, layer: str, image: str | None) -> None:
    """split LAYER -- PATH...: the changes under PATHs become a layer of their own, the
    rest stays in a layer above it."""
    from layerctl import rewrite

    paths = ctx.meta.get("split_paths") or []
    click.echo(rewrite.split(open_store(ctx), layer, paths, image).message)
