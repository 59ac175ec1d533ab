"""The bodies of `create`, `mount` and `commit` without click: the commands of the
everyday loop (change, commit, start a container on the new image), which a user or a
script runs again and again. cli/entry.py runs their plain form directly; the click
commands in cli/containers.py parse every other form and call these same bodies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from layerctl.cli.out import echo

if TYPE_CHECKING:
    from layerctl.store.repo import Store


def create(store: Store, image: str, name: str | None = None,
           driver: str | None = None) -> None:
    """Create a container from IMAGE and print its id."""
    from layerctl.containers import create as create_container

    c, notice = create_container(store, image, name=name, driver=driver)
    if notice:
        echo(f"layerctl: {notice}", err=True)
    echo(c.id)


def mount(store: Store, container: str) -> None:
    """Mount a container's filesystem and print the merged dir."""
    from layerctl.containers import mount as mount_container

    echo(mount_container(store, container))


def commit(store: Store, container: str, repository: str | None = None, *,
           message: str = "", author: str | None = None, changes: tuple[str, ...] = (),
           allow_empty: bool = False, patch: bool = False, quiet: bool = False,
           paths: tuple[str, ...] = ()) -> None:
    """Commit a container's changes as a new layer; print its id (and, unless quiet,
    how many changes it took on stderr)."""
    from layerctl.containers import commit as commit_container
    from layerctl.errors import BadInput

    if patch and paths:
        raise BadInput("--patch and -- PATH... cannot be combined")
    choose = None
    if patch:
        from layerctl.cli.undo import choose_hunks as choose
    result = commit_container(
        store, container, message=message, author=author, instructions=list(changes),
        tag=repository, paths=paths, allow_empty=allow_empty, choose=choose,
    )
    if quiet:
        echo(result.layer_id)
        return
    n = len(result.changes)
    extra = f", {result.remaining} still pending" if result.remaining else ""
    echo(f"[{result.layer_id[:12]}] {n} change{'s' if n != 1 else ''}{extra}", err=True)
    echo(result.layer_id)
