"""Helpers for the interchange tests: small images built through the core API,
archives taken apart and put back together, and a store fingerprint."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from layerctl.images import chain, parse_name, resolve
from layerctl.store.layers import read_layer
from layerctl.store.meta import DIR, Meta
from layerctl.store.objects import BLOB
from layerctl.store.repo import Store
from tests.layerhelpers import commit_edit, import_dir, put_file

# podman's `image mount` root is a directory of its own (0555, mount time), not the image's
PODMAN_ROOT = {"mode:.", "mtime:.", "uid:.", "gid:."}

MTIME = 1_700_000_000_123_456_789
ROOT = os.geteuid() == 0


def make_tree(top: Path) -> Path:
    """Every kind of entry and metadata a layer keeps (no '.wh.' names: a layer tar
    cannot carry them)."""
    t = os.fsencode(top)

    def j(*p: bytes) -> bytes:
        return os.path.join(t, *p)

    os.makedirs(j(b"etc"))
    os.makedirs(j(b"empty", b"nested-empty"))
    os.makedirs(j(b"secret"), mode=0o700)
    os.makedirs(j(b"var", b"cache", b"apt"))
    os.makedirs(j(b"usr", b"share", b"doc", b"pkg"))
    for name, data in ((b"etc/hostname", b"box\n"), (b"etc/os-release", b"ID=test\n"),
                       (b"var/cache/apt/a.bin", b"a" * 5000), (b"var/cache/apt/b.bin", b"b"),
                       (b"usr/share/doc/pkg/copyright", b"GPL\n"),
                       (b"usr/share/doc/README", b"docs\n"), (b"big", os.urandom(300_000))):
        with open(j(name), "wb") as f:
            f.write(data)
    with open(j(b"bin-tool"), "wb") as f:
        f.write(b"\x7fELF\0binary")
    os.chmod(j(b"bin-tool"), 0o4755)
    os.chmod(j(b"secret"), 0o1700)
    os.symlink(b"etc/hostname", j(b"link"))
    os.symlink(b"/does/not/exist", j(b"dangling"))
    os.link(j(b"etc", b"hostname"), j(b"hardlink"))
    os.link(j(b"etc", b"hostname"), j(b"etc", b"another-link"))
    os.mkfifo(j(b"fifo"))
    for odd in (b"new\nline", b"\xff\xfebad-utf8", "中文".encode(), b"%percent", b"sp ace",
                b"x" * 200):
        with open(j(b"etc", odd), "wb") as f:
            f.write(odd * 3)
    os.setxattr(j(b"etc", b"hostname"), b"user.comment", b"\x00\x01binary\xff")
    if ROOT:
        os.mknod(j(b"null"), 0o666 | 0o020000, os.makedev(1, 3))
        os.chown(j(b"etc", b"hostname"), 1000, 1000)
        os.chown(j(b"link"), 7, 8, follow_symlinks=False)
    for dirpath, dirnames, filenames in os.walk(t, topdown=False):
        for name in dirnames + filenames:
            os.utime(os.path.join(dirpath, name), ns=(MTIME, MTIME), follow_symlinks=False)
    os.chmod(t, 0o750)
    os.utime(t, ns=(MTIME + 1, MTIME + 1))
    return top


def edit_layer(editor, writer) -> None:
    """Additions, modifications, deletions, an opaque directory, metadata-only changes."""
    put_file(editor, writer, b"etc/added", b"new file\n")
    editor.set_dir(b"opt", Meta(DIR, 0o755, mtime_ns=MTIME))
    put_file(editor, writer, b"opt/tool", b"#!/bin/sh\n", mode=0o755)
    put_file(editor, writer, b"etc/os-release", b"ID=changed\n")  # modified
    editor.delete(b"usr/share/doc")  # a directory with everything below
    editor.delete(b"dangling")
    editor.clear_dir(b"var/cache/apt")  # every old entry gone, a new one: opaque
    put_file(editor, writer, b"var/cache/apt/fresh", b"fresh\n")
    meta, blob = editor.get(b"bin-tool")
    editor.set_file(b"bin-tool", Meta(meta.kind, 0o755, 5, 6, meta.mtime_ns, meta.size), blob)
    editor.set_dir(b"secret", Meta(DIR, 0o700, 1, 1, MTIME + 5))  # metadata only
    root = editor.get(b"")[0]
    editor.set_dir(b"", Meta(DIR, 0o755, root.uid, root.gid, MTIME + 9))
    writer.add(BLOB, b"")


def two_layer_image(store: Store, src: Path, name: str = "test/app:1") -> list[str]:
    """A base imported from `src` and a layer on it from edit_layer; tagged `name`."""
    base = import_dir(store, src, name.split(":")[0] + ":base")
    top = commit_edit(store, base, edit_layer, name=name, message="edit\n\nsecond paragraph")
    return [base, top]


def layer_ids(store: Store, name: str) -> list[str]:
    return [layer.id for layer in chain(store, resolve(store, name))]


def roots(store: Store, name: str) -> list[tuple[bytes, bytes]]:
    return [(layer.root.rootfs, layer.root.meta) for layer in chain(store, resolve(store, name))]


def top_layer(store: Store, name: str):
    return read_layer(store, resolve(store, name))


def image_name(text: str):
    return parse_name(text)


# -- archives ------------------------------------------------------------------------


def read_tar(path: Path) -> dict[str, tuple[tarfile.TarInfo, bytes | None]]:
    """name -> (info, content or None), in archive order."""
    out = {}
    with tarfile.open(path) as tar:
        for info in tar.getmembers():
            data = tar.extractfile(info).read() if info.isreg() else None
            out[info.name] = (info, data)
    return out


def write_tar(path: Path, members: dict[str, tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for _name, (info, data) in members.items():
            info = tarfile.TarInfo(info.name) if info is None else info
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return path


def file_info(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = 0o644
    return info


def json_bytes(data: object) -> bytes:
    return json.dumps(data).encode()


def fingerprint(root: Path) -> dict[str, str]:
    """Every file under a store (path -> sha256 of its content; symlinks by target)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            if os.path.islink(full):
                out[rel] = "-> " + os.readlink(full)
            elif os.path.isdir(full):
                out[rel] = "dir"
            elif not os.path.isfile(full):  # a layer dir's whiteout (a 0/0 char device)
                st = os.lstat(full)
                out[rel] = f"node {st.st_mode:o} {st.st_rdev}"
            else:
                with open(full, "rb") as f:
                    out[rel] = hashlib.sha256(f.read()).hexdigest()
    return out


class Podman:
    """podman on a private storage (graph root, run root and tmp dir under `top`)."""

    def __init__(self, top: Path) -> None:
        self.top = top
        self.argv = [
            "podman", "--root", str(top / "root"), "--runroot", str(top / "run"),
            "--storage-driver", "overlay", "--storage-opt", "overlay.mountopt=nodev",
            "--tmpdir", str(top / "tmp"), "--events-backend", "none",
        ]

    def __call__(self, *args: object, check: bool = True) -> str:
        # a test's DOCKER_CONFIG (registry credentials for layerctl) is not podman's
        env = {k: v for k, v in os.environ.items() if k != "DOCKER_CONFIG"}
        proc = subprocess.run([*self.argv, *map(str, args)], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=600, env=env)
        if check and proc.returncode != 0:
            pytest.fail(f"podman {' '.join(map(str, args))}: {proc.stderr}", pytrace=False)
        return proc.stdout.strip()

    def inspect(self, ref: str) -> dict:
        return json.loads(self("image", "inspect", ref))[0]

    def cleanup(self) -> None:
        self("rm", "-af", check=False)
        self("image", "unmount", "--all", "--force", check=False)
        self("rmi", "-af", check=False)
        leaked = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
                  if line.split()[1].startswith(str(self.top))]
        for point in sorted(leaked, key=len, reverse=True):
            subprocess.run(["umount", "-l", point], check=False)
        shutil.rmtree(self.top, ignore_errors=True)


def podman_two_layers(podman: Podman, rootfs: Path, tmp_path: Path, repo: str = "pm",
                      edit: Callable[[Path], None] | None = None) -> None:
    """localhost/REPO:base (podman import of `rootfs`) and localhost/REPO:two (a commit
    of `edit(merged)`; default: additions, changes, deletions, an opaque directory and
    a chmod)."""
    tar = tmp_path / f"{repo}-rootfs.tar"
    subprocess.run(["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-C",
                    str(rootfs), "-cf", str(tar), "."], check=True)
    podman("import", tar, f"localhost/{repo}:base")
    podman("create", "--name", "builder", f"localhost/{repo}:base", "/bin/true")
    merged = Path(podman("mount", "builder"))
    try:
        (edit or _two_layers_edit)(merged)
    finally:
        podman("umount", "builder")
    podman("commit", "-q", "builder", f"localhost/{repo}:two")
    podman("rm", "builder")


def _two_layers_edit(merged: Path) -> None:
    (merged / "etc/added").write_text("added\n")
    (merged / "etc/hostname").write_text("changed\n")
    os.unlink(merged / "link")
    shutil.rmtree(merged / "empty")
    shutil.rmtree(merged / "var/cache/apt")  # then recreated: an opaque directory
    (merged / "var/cache/apt").mkdir()
    (merged / "var/cache/apt/fresh").write_text("fresh\n")
    os.chmod(merged / "bin-tool", 0o700)
