"""The store commands end to end through the real CLI."""

import json
import os
import signal
import subprocess
import sys

import pytest

from tests.treecompare import compare, snapshot


@pytest.fixture
def tree(tmp_path):
    src = tmp_path / "rootfs"
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "hostname").write_text("box\n")
    (src / "bin").mkdir()
    (src / "bin" / "tool").write_bytes(b"\x7fELF\0\0bin")
    (src / "empty").mkdir()
    os.symlink("etc/hostname", src / "link")
    return src


def no_traceback(proc):
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_import_images_inspect_history(cli, tree):
    layer_id = cli(
        "import", tree, "web:1", "-m", "first", "-a", "Jane <jane@example.com>"
    ).stdout.strip()
    assert len(layer_id) == 40
    images = cli("images").stdout.splitlines()
    assert images[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert images[1].split()[:2] == ["web", "1"]
    data = json.loads(cli("inspect", "web:1").stdout)[0]
    for key in (
        "Id",
        "RepoTags",
        "Parent",
        "Comment",
        "Created",
        "Author",
        "Config",
        "Architecture",
        "Os",
        "Size",
        "RootFS",
    ):
        assert key in data
    assert data["RepoTags"] == ["web:1"]
    assert data["Author"] == "Jane <jane@example.com>"
    assert data["Comment"] == "first"
    assert data["RootFS"]["Layers"][0].startswith("sha256:")
    assert data["Id"].startswith("sha256:")
    assert data["Layerctl"]["Layer"] == layer_id
    history = cli("history", "web:1").stdout
    assert layer_id[:12] in history and "first" in history


def test_docker_flag_spellings_and_unicode(cli, tree):
    cli("import", "-m=中文消息", "-a=kuangshen", tree, "a:1")
    cli("import", "--message=second", "--author=狂神 <ks@example.com>", tree, "a:2")
    log = cli("log", "a:1").stdout
    assert "Author: kuangshen" in log and "中文消息" in log
    log2 = cli("log", "a:2").stdout
    assert "狂神 <ks@example.com>" in log2 and "second" in log2


def test_tag_rmi_and_refs(cli, tree):
    layer_id = cli("import", tree, "base").stdout.strip()
    cli("tag", "base", "copy:v2")
    cli("tag", layer_id[:10], "registry.local:5000/ns/copy:v3")
    out = cli("images").stdout
    assert "copy" in out and "v2" in out and "registry.local:5000/ns/copy" in out
    assert cli("rmi", "copy:v2").stdout.startswith("Untagged: copy:v2")
    assert "v2" not in cli("images").stdout
    assert "no such image" in no_traceback(cli("rmi", "copy:v2", check=False))


def test_log_show_diff_checkout(cli, tree, tmp_path):
    cli("import", tree, "img:1", "-m", "one")
    (tree / "etc" / "hostname").write_text("changed\n")
    os.chmod(tree / "bin" / "tool", 0o4755)
    (tree / "new.txt").write_text("hello\n")
    os.rmdir(tree / "empty")
    cli("import", tree, "img:2", "-m", "two")
    diff = cli("diff", "img:1", "img:2").stdout
    assert "C /etc/hostname  (content)" in diff
    assert "C /bin/tool  (mode 0644→4755)" in diff
    assert "A /new.txt" in diff and "D /empty" in diff
    patch = cli("diff", "-p", "img:1", "img:2").stdout
    assert "-box" in patch and "+changed" in patch
    assert "Binary files" not in patch
    (tree / "bin" / "tool").write_bytes(b"\x7fELF\0\0other")
    cli("import", tree, "img:3")
    assert (
        "Binary files a/bin/tool and b/bin/tool differ"
        in cli("diff", "-p", "img:2", "img:3").stdout
    )
    assert cli("show", "img:2:/etc/hostname").stdout == "changed\n"
    assert cli("show", "img:2:etc/hostname").stdout == "changed\n"
    assert cli("show", "img:2:/link").stdout == "changed\n"
    shown = cli("show", "img:2").stdout
    assert "two" in shown
    oneline = cli("log", "--oneline").stdout.splitlines()
    assert len(oneline) == 3
    assert len(cli("log", "-n", "1", "--oneline").stdout.splitlines()) == 1
    stat = cli("log", "--stat", "img:2").stdout
    assert "A /etc/hostname" in stat  # the base layer's stat lists its whole tree
    out = tmp_path / "out"
    cli("checkout", "img:3", out)
    assert compare(snapshot(tree), snapshot(out)) == []
    assert "not an empty directory" in no_traceback(cli("checkout", "img:3", out, check=False))
    assert cli("fsck").stdout.startswith("ok:")


def test_user_errors_are_one_line(cli, tree, tmp_path):
    assert "no such file" in no_traceback(cli("import", tmp_path / "missing", "x", check=False))
    assert "invalid image name" in no_traceback(cli("import", tree, "Bad:Name", check=False))
    assert "invalid image name" in no_traceback(cli("import", tree, "a:b:c", check=False))
    assert "no such image or layer" in no_traceback(cli("show", "ghost", check=False))
    assert "no such image or layer" in no_traceback(cli("log", "abcdef12", check=False))
    cli("import", tree, "one")
    assert "has no parent" in no_traceback(cli("show", "one~1", check=False))
    assert "invalid" in no_traceback(cli("show", "one~x", check=False))


def test_fsck_names_a_corrupt_object(cli, tree, store_root):
    layer_id = cli("import", tree, "img").stdout.strip()
    # Rewrite the commit as a loose object whose content no longer matches its id.
    import zlib

    path = store_root / "objects" / layer_id[:2] / layer_id[2:]
    raw = zlib.decompress(path.read_bytes())
    os.chmod(path, 0o644)
    path.write_bytes(zlib.compress(raw.replace(b"base", b"BASE") if b"base" in raw else raw + b"x"))
    proc = cli("fsck", check=False)
    assert proc.returncode != 0
    assert layer_id in proc.stdout and "corrupt" in proc.stdout
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("point", ["pack.write-object#100", "pack.write-object#700",
                                   "pack.rename-index", "import.write-layer", "import.move-tag"])
def test_killed_import_leaves_a_valid_store(tmp_path, store_root, point):
    """An import killed mid-pack (the 100th or 700th of 800 files), before its index
    lands, or before its layer or tag is written: git fsck and layerctl fsck accept the
    store, the tag does not exist, and the import run again gives the whole tree."""
    big = tmp_path / "big"
    for i in range(20):
        d = big / f"d{i}"
        d.mkdir(parents=True)
        for j in range(40):
            (d / f"f{j}").write_bytes(os.urandom(64 * 1024))
    env = dict(os.environ, LAYERCTL_ROOT=str(store_root))
    layerctl = [sys.executable, "-m", "layerctl"]
    subprocess.run([*layerctl, "import", str(big), "seed"], env=env, check=True,
                   capture_output=True)
    for j in range(40):  # 800 new blobs: the seed's are skipped, not written again
        for i in range(20):
            (big / f"d{i}" / f"f{j}").write_bytes(os.urandom(64 * 1024))
    proc = subprocess.run([*layerctl, "import", str(big), "victim"],
                          env={**env, "LAYERCTL_CRASH_AT": point}, capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr  # killed at the point
    if point.startswith("pack.write-object"):  # mid-write: a partial pack is on disk
        partial = [p for p in (store_root / "objects" / "pack").iterdir()
                   if p.name.startswith("tmp_pack")]
        assert partial and partial[0].stat().st_size > 50 * 64 * 1024, partial
    git = subprocess.run(["git", "--git-dir", str(store_root), "fsck", "--no-dangling"],
                         capture_output=True, text=True)
    assert git.returncode == 0, git.stderr
    ours = subprocess.run([*layerctl, "fsck"], env=env, capture_output=True, text=True)
    assert ours.returncode == 0, ours.stdout + ours.stderr
    images = subprocess.run([*layerctl, "images"], env=env, capture_output=True, text=True)
    assert "seed" in images.stdout and "victim" not in images.stdout
    subprocess.run([*layerctl, "import", str(big), "victim"], env=env, check=True,
                   capture_output=True)
    out = tmp_path / "out"
    subprocess.run([*layerctl, "checkout", "victim", str(out)], env=env, check=True,
                   capture_output=True)
    assert compare(snapshot(big), snapshot(out)) == []


def test_history_shows_each_layers_own_size(cli, tree, store_root):
    from layerctl.store.repo import Store
    from tests.layerhelpers import commit_edit, put_file

    (tree / "base.bin").write_bytes(b"b" * 3000)
    cli("import", tree, "img:1", "-m", "one")
    store = Store(str(store_root))

    def edit(editor, writer):
        put_file(editor, writer, b"big.bin", b"x" * 5000)
        editor.delete(b"base.bin")

    commit_edit(store, "img:1", edit, "img:2", "two")
    store.close()
    top, base = cli("history", "img:2").stdout.splitlines()[1:]
    assert "two" in top and " 5kB " in top  # only what the layer adds
    assert "one" in base and " 3.01kB " in base  # a base layer: its whole tree


def test_checkout_of_an_entry_the_filesystem_refuses_is_one_line(cli, tree, store_root, tmp_path):
    """A layer whose file carries an xattr value the kernel rejects (a security.capability
    that is not one): checkout says which entry, exits 1 and leaves no target behind."""
    from layerctl.store.meta import FILE, Meta
    from layerctl.store.objects import BLOB
    from layerctl.store.repo import Store
    from tests.layerhelpers import commit_edit

    cli("import", tree, "x:1")
    store = Store(str(store_root))

    def edit(editor, writer):
        blob = writer.add(BLOB, b"data\n")
        editor.set_file(b"caps", Meta(FILE, 0o755, 0, 0, 10**18, 5,
                                      xattrs=((b"security.capability", b"\x01junk"),)), blob)

    commit_edit(store, "x:1", edit, name="x:2")
    store.close()
    dest = tmp_path / "co"
    proc = cli("checkout", "x:2", dest, check=False)
    no_traceback(proc)
    assert proc.returncode == 1 and "cannot check out" in proc.stderr and "/caps" in proc.stderr
    assert not dest.exists()


def test_rmi_refuses_an_image_a_container_uses_unless_forced(cli, tree):
    cli("import", tree, "used:1")
    cli("tag", "used:1", "used:2")
    cli("create", "--driver", "vfs", "--name", "user", "used:1")
    proc = cli("rmi", "used:2", "used:1", check=False)
    no_traceback(proc)
    assert proc.returncode == 1
    assert 'unable to remove repository reference "used:1" (must force)' in proc.stderr
    assert _tags(cli) == {"used:1", "used:2"}  # nothing removed when one is refused
    cli("rmi", "-f", "used:1")
    assert _tags(cli) == {"used:2"}
    cli("rm", "user")
    cli("rmi", "used:2")
    assert _tags(cli) == set()


def _tags(cli) -> set[str]:
    return {":".join(line.split()[:2]) for line in cli("images").stdout.splitlines()[1:]}
