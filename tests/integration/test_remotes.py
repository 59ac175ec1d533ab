"""git remotes: remote add/-v/remove, push --git and fetch over the local transport and
git://, with the pushed repository read back by stock git."""

from __future__ import annotations

from pathlib import Path

import pytest

from layerctl.store.repo import Store
from tests.githelpers import git
from tests.layerhelpers import commit_edit, import_dir, put_file


@pytest.fixture
def images(tmp_path, store_root):
    """A store with app:1 (base) and app:2 (one layer on top, another author)."""
    src = tmp_path / "src"
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "os-release").write_text("NAME=remote-test\n")
    (src / "bin").mkdir()
    (src / "bin" / "tool").write_bytes(b"#!/bin/sh\n")
    store = Store(str(store_root))
    base = import_dir(store, src, "app:1", message="base system")

    def edit(editor, writer):
        put_file(editor, writer, b"etc/motd", b"hello\n")

    top = commit_edit(
        store, "app:1", edit, name="app:2", message="add motd", author="Jane <jane@example.com>"
    )
    store.close()
    return base, top


@pytest.fixture
def bare(tmp_path) -> Path:
    path = tmp_path / "remote.git"
    git("init", "-q", "--bare", path)
    return path


def test_remote_add_list_remove(cli, bare):
    cli("remote", "add", "origin", bare)
    cli("remote", "add", "backup", "git://127.0.0.1:9/x.git")
    assert cli("remote").stdout.split() == ["origin", "backup"]
    assert cli("remote", "-v").stdout == (
        f"origin\t{bare} (fetch)\norigin\t{bare} (push)\n"
        "backup\tgit://127.0.0.1:9/x.git (fetch)\nbackup\tgit://127.0.0.1:9/x.git (push)\n"
    )
    again = cli("remote", "add", "origin", bare, check=False)
    assert again.returncode == 1 and "already exists" in again.stderr
    bad = cli("remote", "add", "no/slash", bare, check=False)
    assert bad.returncode == 1 and "invalid remote name" in bad.stderr
    cli("remote", "remove", "backup")
    assert cli("remote").stdout.split() == ["origin"]
    gone = cli("remote", "rm", "backup", check=False)
    assert gone.returncode == 1 and gone.stderr == "layerctl: no such remote: backup\n"


def _check_stock_git(bare: Path, tmp_path: Path, top: str, base: str) -> None:
    """A mirror clone of the pushed repository reads with stock git."""
    clone = tmp_path / "clone.git"
    git("clone", "-q", "--mirror", bare, clone)
    ref = "refs/images/app/_tags/2"
    assert git("--git-dir", clone, "rev-parse", ref).strip() == top
    log = git("--git-dir", clone, "log", "--format=%H|%an <%ae>|%s", ref).splitlines()
    assert log == [
        f"{top}|Jane <jane@example.com>|add motd",
        f"{base}|Test <test@example.com>|base system",
    ]
    assert git("--git-dir", clone, "show", f"{ref}:rootfs/etc/os-release") == "NAME=remote-test\n"
    assert git("--git-dir", clone, "show", f"{ref}:rootfs/etc/motd") == "hello\n"
    git("--git-dir", clone, "fsck", "--strict", "--no-dangling")


def test_push_fetch_local_transport(cli, images, bare, tmp_path):
    base, top = images
    cli("remote", "add", "origin", bare)
    out = cli("push", "--git", "origin").stdout
    assert out.splitlines() == [
        f"To {bare}",
        " * [new image]         app:1",
        " * [new image]         app:2",
    ]
    _check_stock_git(bare, tmp_path, top, base)
    again = cli("push", "--git", "origin").stdout
    assert " = [up to date]        app:2" in again.splitlines()

    # another store fetches everything, over file:// this time
    other = tmp_path / "other"
    env = {"LAYERCTL_ROOT": str(other)}
    cli("remote", "add", "hub", f"file://{bare}", env=env)
    fetched = cli("fetch", "hub", env=env).stdout.splitlines()
    assert fetched[0] == f"From file://{bare}"
    assert " * [new image]         app:2" in fetched
    listing = cli("images", env=env).stdout
    assert "app " in listing and listing.count("app") == 2
    assert (
        cli("log", "--oneline", "app:2", env=env).stdout == cli("log", "--oneline", "app:2").stdout
    )
    cli("fsck", env=env)
    cli("checkout", "app:2", tmp_path / "co", env=env)
    assert (tmp_path / "co" / "etc" / "motd").read_text() == "hello\n"


def test_push_one_image_and_fast_forward_rules(cli, images, bare, tmp_path):
    base, top = images
    cli("remote", "add", "origin", bare)
    out = cli("push", "--git", "origin", "app:1").stdout
    assert "app:1" in out and "app:2" not in out
    assert git("--git-dir", bare, "for-each-ref", "--format=%(refname)").split() == [
        "refs/images/app/_tags/1"
    ]
    # app:1 moves forward to app:2's layer: a fast-forward
    cli("tag", "app:2", "app:1")
    out = cli("push", "--git", "origin", "app:1").stdout
    assert f"   {base[:7]}..{top[:7]}  app:1" in out.splitlines()
    # app:1 moves to an unrelated layer: rejected without --force
    src = tmp_path / "other-src"
    src.mkdir()
    (src / "x").write_text("x")
    cli("import", src, "app:1")
    rejected = cli("push", "--git", "origin", "app:1", check=False)
    assert rejected.returncode == 1
    assert "[rejected]" in rejected.stdout and "use --force" in rejected.stdout
    assert rejected.stderr == "layerctl: 1 image(s) not pushed\n"
    forced = cli("push", "--git", "origin", "-f", "app:1").stdout
    assert "(forced update)" in forced
    # fetch into the original store's view: a local tag that diverged is kept
    cli("tag", "app:2", "app:1")
    kept = cli("fetch", "origin", check=False)
    assert kept.returncode == 1 and "[rejected]" in kept.stdout
    assert cli("inspect", "app:1").stdout.count(top) >= 1


def test_missing_remote_and_images(cli, images, tmp_path):
    out = cli("push", "--git", str(tmp_path / "nowhere.git"), check=False)
    assert out.returncode == 1
    assert out.stderr.startswith("layerctl: git remote ") and "\n" == out.stderr[-1]
    assert out.stderr.count("\n") == 1
    missing = cli("push", "--git", "origin", check=False)
    assert missing.stderr == "layerctl: no such remote: origin (see `layerctl remote -v`)\n"
    bare = tmp_path / "r.git"
    git("init", "-q", "--bare", bare)
    noimg = cli("push", "--git", bare, "nope:1", check=False)
    assert noimg.stderr == "layerctl: no such image: nope:1\n"
    nofetch = cli("fetch", bare, "nope:1", check=False)
    assert nofetch.returncode == 1 and "has no image nope:1" in nofetch.stderr


def test_push_fetch_git_daemon(cli, images, git_daemon, tmp_path):
    base, top = images
    url, served = git_daemon
    cli("remote", "add", "daemon", url)
    out = cli("push", "--git", "daemon").stdout
    assert f"To {url}" in out and " * [new image]         app:2" in out
    _check_stock_git(served, tmp_path, top, base)
    env = {"LAYERCTL_ROOT": str(tmp_path / "other")}
    fetched = cli("fetch", url, "app:2", env=env).stdout
    assert " * [new image]         app:2" in fetched and "app:1" not in fetched
    assert cli("images", "-q", env=env).stdout.strip() == cli("images", "-q").stdout.split()[-1]
    cli("fsck", env=env)
