"""Test helpers: build layers through the core API; release what container tests mounted."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

from layerctl import containers as C
from layerctl.errors import NotFound
from layerctl.images import parse_name, resolve, set_tag
from layerctl.importer import commit_root, import_directory
from layerctl.store.checkout import checkout
from layerctl.store.edit import TreeEditor
from layerctl.store.layers import read_layer
from layerctl.store.meta import FILE, Meta
from layerctl.store.objects import BLOB
from layerctl.store.repo import Store
from tests.treecompare import compare, snapshot

# the return code of a process that a fault point killed (LAYERCTL_CRASH_AT)
KILLED = -signal.SIGKILL

AUTHOR = "Test <test@example.com>"


def import_dir(store: Store, path: os.PathLike | str, name: str, message: str = "base") -> str:
    return import_directory(store, os.fspath(path), parse_name(name), AUTHOR, message)


def commit_edit(
    store: Store,
    base: str,
    edit,
    name: str | None = None,
    message: str = "edit",
    author: str = AUTHOR,
) -> str:
    """Apply `edit(editor, writer)` on layer `base` and commit the result as its child."""
    parent = read_layer(store, resolve(store, base))
    editor = TreeEditor(store, parent.root)
    with store.pack_writer() as writer:
        edit(editor, writer)
        root = editor.write(writer)
        writer.finish()
    store.landed()
    layer_id = commit_root(
        store,
        root,
        parent.root,
        parent.id,
        parent.config,
        author,
        message,
        "test edit",
        parent.size,
    )
    if name:
        set_tag(store, parse_name(name), layer_id)
    return layer_id


def put_file(
    editor: TreeEditor,
    writer,
    path: bytes,
    data: bytes,
    mode: int = 0o644,
    uid: int = 0,
    gid: int = 0,
    mtime_ns: int = 1_700_000_000_000_000_000,
) -> None:
    blob = writer.add(BLOB, data)
    editor.set_file(path, Meta(FILE, mode, uid, gid, mtime_ns, len(data)), blob)


def release_containers(store: object) -> None:
    """Unmount what the containers of `store` left mounted (a failed test's) and close
    the store: a container test's teardown."""
    from layerctl.containers import state as cstate

    for c in cstate.list_containers(store):
        merged = os.path.join(cstate.state_dir(store, c.id), "merged")
        if os.path.ismount(merged):
            subprocess.run(["umount", "-l", merged], check=False)
    store.close()


def container_names(cli: Callable[..., subprocess.CompletedProcess[str]]) -> list[str]:
    """The NAMES column of `ps -a`: a name checked against the whole table could match
    inside a random container or image id."""
    return cli("ps", "-a", "--format", "{{.Names}}").stdout.split()


def cli_env(store_root: object, repo_root: object) -> dict[str, str]:
    """The environment a test runs `python -m layerctl` in: this working tree's
    package, the store at `store_root`, and no CI=true (the runner's, not the
    command's: `waste` would turn into the CI gate; tests that mean it set it)."""
    env = dict(os.environ)
    env.pop("CI", None)
    env["LAYERCTL_ROOT"] = str(store_root)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(repo_root), os.environ.get("PYTHONPATH")) if p)
    return env


class Mounted:
    """Create + mount a container; unmounts in __exit__ even when the test fails."""

    def __init__(self, store: Store, image: str, name: str, driver: str = "overlay") -> None:
        self.store, self.image, self.name, self.driver = store, image, name, driver

    def __enter__(self) -> Path:
        c, _ = C.create(self.store, self.image, name=self.name, driver=self.driver)
        self.container = c
        return Path(C.mount(self.store, self.name))

    def __exit__(self, *exc: object) -> None:
        try:
            C.umount(self.store, self.name)
        except NotFound:
            pass


def sh(cmd: str, cwd: Path) -> None:
    subprocess.run(cmd, shell=True, check=True, cwd=cwd)


def checkout_of(store: Store, image: str, dest: Path) -> Path:
    checkout(store, read_layer(store, resolve(store, image)).root, dest)
    return dest


def same_as_image(store: Store, image: str, merged: Path, tmp: Path) -> None:
    """The merged dir shows exactly the image: every entry, every piece of metadata
    (the root's own attributes are the upper dir's, set to the layer root's too)."""
    co = checkout_of(store, image, tmp / f"co-{len(list(tmp.iterdir()))}")
    try:
        assert compare(snapshot(co), snapshot(merged)) == []
    finally:
        shutil.rmtree(co)
