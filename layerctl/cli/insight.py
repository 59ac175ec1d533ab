"""Insight commands: `waste` (alias `efficiency`): its options; the body is
cli/waste_view.py."""

from __future__ import annotations

import click

from layerctl.cli.common import open_store
from layerctl.cli.waste_view import show_waste


@click.command("waste")
@click.argument("target")
@click.option("--base", "base_ref", metavar="REF",
              help="Last layer of the base image (default: nearest imported/pulled image).")
@click.option("--json", "as_json", is_flag=True, help="Print the analysis as JSON.")
@click.option("--by", type=click.Choice(["path", "layer", "class"]), default="path",
              show_default=True, help="Group the wasted bytes by path, culprit layer or class.")
@click.option("--all", "show_all", is_flag=True, help="Also show zero-byte rows.")
@click.option("--duplicates", is_flag=True,
              help="Also list content stored at several visible paths (reads every file).")
@click.option("--ci", is_flag=True, help="Evaluate the CI rules (also when CI=true).")
@click.option("--ci-config", metavar="FILE", help="dive CI file (default: ./.dive-ci).")
@click.option("--dive-compat", "dive_compat", is_flag=False, flag_value="0.13", default=None,
              metavar="[0.13|685]", help="dive 0.13.1 numbers (or PR #685).")
@click.pass_context
def waste_cmd(ctx: click.Context, target: str, base_ref: str | None, as_json: bool, by: str,
              show_all: bool, duplicates: bool, ci: bool, ci_config: str | None,
              dive_compat: str | None) -> None:
    """Wasted space in IMAGE|CONTAINER: bytes the layers ship that the final
    filesystem does not show, per path, class and culprit layer."""
    show_waste(open_store(ctx), target, base_ref, as_json, by, show_all, duplicates, ci,
               ci_config, dive_compat)
