"""Limits and errors (issue 10): bounded patch rendering, names that cannot forge
output lines, tags git refuses as ref names, and one-line errors for bad input and
damaged stores. Everything runs the real CLI on real stores."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from layerctl.errors import InvalidName
from tests.layerhelpers import container_names
from tests.paths import REPO_ROOT

MiB = 1024 * 1024
RSS_LIMIT = 150 * MiB  # a layerctl process is ~30 MiB; any whole-file read shows


def _env(store_root: Path) -> dict:
    env = dict(os.environ, LAYERCTL_ROOT=str(store_root))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    return env


# A child's peak RSS starts at its parent's size at fork (exec keeps the old high-water
# mark), and pytest may be large: a small Python in between forks the measured process.
_WAIT4 = (
    "import os, subprocess, sys\n"
    "p = subprocess.Popen(sys.argv[2:])\n"
    "_, status, usage = os.wait4(p.pid, 0)\n"
    "p.returncode = 0\n"
    "open(sys.argv[1], 'w').write(str(usage.ru_maxrss * 1024))\n"
    "sys.exit(os.waitstatus_to_exitcode(status))\n"
)


def measured(store_root: Path, tmp_path: Path, *args: str, code: str | None = None,
             keep: bool = True) -> tuple[int, bytes, str, int]:
    """Run `layerctl ARGS` (or `python -c CODE`) and return (exit code, stdout, stderr,
    peak RSS in bytes of that process). With keep=False stdout stays in
    tmp_path/rss.out (never read into this process)."""
    out, err, rss = tmp_path / "rss.out", tmp_path / "rss.err", tmp_path / "rss"
    argv = [sys.executable, "-c", code] if code else [sys.executable, "-m", "layerctl", *args]
    with open(out, "wb") as o, open(err, "wb") as e:
        proc = subprocess.run([sys.executable, "-c", _WAIT4, str(rss), *argv], stdout=o,
                              stderr=e, stdin=subprocess.DEVNULL, env=_env(store_root))
    return (proc.returncode, out.read_bytes() if keep else b"",
            err.read_text(errors="replace"), int(rss.read_text()))


def small_tree(top: Path) -> Path:
    (top / "etc").mkdir(parents=True)
    (top / "etc" / "hostname").write_text("base\n")
    (top / "usr" / "bin").mkdir(parents=True)
    (top / "usr" / "bin" / "env").write_bytes(b"\x7fELF\0binary")
    return top


def vfs_container(cli, name: str, image: str) -> Path:
    cli("create", "--driver", "vfs", "--name", name, image)
    return Path(cli("mount", name).stdout.strip())


def one_error_line(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("layerctl: "), proc.stderr
    for w in words:
        assert w in lines[0], lines[0]


# -- patches never read large or sparse files whole -----------------------------------


def test_diff_patch_of_sparse_3gib_container_file_stays_small(cli, store_root, tmp_path):
    cli("import", small_tree(tmp_path / "src"), "img:1")
    root = vfs_container(cli, "big", "img:1")
    with open(root / "sparse", "wb") as f:
        f.truncate(3 * 1024 * MiB)
    (root / "etc" / "hostname").write_text("edited\n")
    cli("status", "big")  # hash the file once (bounded: reads in pieces)
    code, out, err, rss = measured(store_root, tmp_path, "diff", "-p", "big")
    assert code == 0, err
    assert rss < RSS_LIMIT, f"diff -p peaked at {rss // MiB} MiB"
    text = out.decode()
    assert "Binary files /dev/null and b/sparse differ (too large to show: 3221225472 bytes)" \
        in text
    assert "-base\n+edited" in text  # small files still get a real patch
    preview = (  # the TUI's pending pane: content and diff previews of the live file
        "from layerctl.presentation.browse import PendingBrowser\n"
        "from layerctl.store.repo import Store\n"
        f"s = Store({str(store_root)!r})\n"
        "b = PendingBrowser.for_container(s, 'big')\n"
        "e = b.entry(b'sparse')\n"
        "print(b.preview(e).text)\n"
        "print(b.preview(e, diff=True).text)\n"
    )
    code, out, err, rss = measured(store_root, tmp_path, code=preview)
    assert code == 0, err
    assert rss < RSS_LIMIT, f"the TUI preview peaked at {rss // MiB} MiB"
    assert b"binary file, 3.22GB" in out and b"too large to show: 3221225472 bytes" in out
    assert rss < RSS_LIMIT, f"diff -p peaked at {rss // MiB} MiB"


def test_patch_of_a_file_that_grew_after_the_scan_is_bounded(cli, store_root, tmp_path):
    """The scan's size is not trusted: the live read is capped too."""
    from layerctl.containers.api import pending
    from layerctl.containers.state import resolve
    from layerctl.patch import PATCH_MAX_BYTES, render_patch
    from layerctl.store.repo import Store

    cli("import", small_tree(tmp_path / "src"), "img:1")
    root = vfs_container(cli, "grow", "img:1")
    (root / "etc" / "hostname").write_text("small\n")
    store = Store(str(store_root))
    try:
        p = pending(store, resolve(store, "grow"))
        (ch,) = [c for c in p.changes if c.path == b"etc/hostname"]
        with open(root / "etc" / "hostname", "ab") as f:
            f.truncate(PATCH_MAX_BYTES + 100)
        asked = []

        def read_new(limit: int) -> bytes:
            asked.append(limit)
            with open(root / "etc" / "hostname", "rb") as f:
                return f.read(limit)

        lines = render_patch(ch, store, read_new)
    finally:
        store.close()
    assert asked == [PATCH_MAX_BYTES + 1]
    assert lines[-1].endswith(f"differ (too large to show: over {PATCH_MAX_BYTES} bytes)")


def test_large_layer_file_in_diff_show_log_and_tui_preview_stays_small(cli, store_root,
                                                                       tmp_path):
    # 256 MiB rather than 3 GiB: committing it must be quick; the bound is the same.
    size = 256 * MiB
    cli("import", small_tree(tmp_path / "src"), "img:1")
    root = vfs_container(cli, "lay", "img:1")
    with open(root / "sparse", "wb") as f:
        f.truncate(size)
    cli("commit", "lay", "img:2")
    for args in (("diff", "-p", "img:1", "img:2"), ("show", "-p", "img:2"),
                 ("log", "-p", "img:2")):
        code, out, err, rss = measured(store_root, tmp_path, *args)
        assert code == 0, err
        assert rss < RSS_LIMIT, f"{args} peaked at {rss // MiB} MiB"
        assert f"(too large to show: {size} bytes)".encode() in out, args
    code, out, err, rss = measured(store_root, tmp_path, "show", "img:2:sparse", keep=False)
    assert code == 0, err
    assert os.path.getsize(tmp_path / "rss.out") == size
    with open(tmp_path / "rss.out", "rb") as f:
        assert all(not piece.strip(b"\0") for piece in iter(lambda: f.read(MiB), b""))
    assert rss < RSS_LIMIT, f"show LAYER:PATH peaked at {rss // MiB} MiB"
    preview = (
        "from layerctl.presentation.browse import LayerBrowser\n"
        "from layerctl.images import resolve\n"
        "from layerctl.store.repo import Store\n"
        f"s = Store({str(store_root)!r})\n"
        "b = LayerBrowser.for_layer(s, resolve(s, 'img:2'))\n"
        "e = b.entry(b'sparse')\n"
        "print(b.preview(e).text)\n"
        "print(b.preview(e, diff=True).text)\n"
    )
    code, out, err, rss = measured(store_root, tmp_path, code=preview)
    assert code == 0, err
    assert b"binary file, 268MB" in out and b"too large to show" in out
    assert rss < RSS_LIMIT, f"the TUI preview peaked at {rss // MiB} MiB"


def test_layer_patch_without_trailing_newline_is_marked(cli, tmp_path):
    src = small_tree(tmp_path / "src")
    cli("import", src, "img:1")
    (src / "etc" / "hostname").write_text("no newline")
    cli("import", src, "img:2")
    out = cli("diff", "-p", "img:1", "img:2").stdout
    assert "+no newline\n\\ No newline at end of file\n" in out


# -- names with control characters never forge lines ----------------------------------


FORGED = b"x\nD passwd"  # would print a line "D passwd" of its own
NASTY = [FORGED, b"tab\there", b"esc\x1b[31mred", b"del\x7f", b"bad\xff\xfe", b"q\"uote\\"]
SHOWN = ['"/x\\nD passwd"', '"/tab\\there"', '"/esc\\033[31mred"', '"/del\\177"',
         '"/bad\\377\\376"', '"/q\\"uote\\\\"']


def _nasty_tree(top: Path) -> Path:
    small_tree(top)
    for name in NASTY:
        with open(os.path.join(os.fsencode(top), name), "wb") as f:
            f.write(b"text\n")
    return top


def _check_output(out: str, expect: list[str]) -> None:
    assert "\nD passwd" not in out
    assert "\x1b" not in out and "\x7f" not in out and "\udcff" not in out
    for shown in expect:
        assert shown in out, (shown, out)


def test_control_character_names_are_quoted_in_layer_output(cli, tmp_path):
    cli("import", small_tree(tmp_path / "a"), "img:1")
    cli("import", _nasty_tree(tmp_path / "b"), "img:2")
    for args in (("diff", "img:1", "img:2"), ("diff", "--name-status", "img:1", "img:2"),
                 ("log", "--stat", "img:2"), ("show", "img:2")):
        _check_output(cli(*args).stdout, SHOWN)
    patch = cli("diff", "-p", "img:1", "img:2").stdout
    _check_output(patch, ['diff --layerctl "a/x\\nD passwd" "b/x\\nD passwd"',
                          '+++ "b/tab\\there"', '"b/del\\177"'])
    listing = cli("show", "img:2:/").stdout
    _check_output(listing, ['"x\\nD passwd"', '"esc\\033[31mred"', '"bad\\377\\376"'])
    assert "café" in _quoted("café")  # readable UTF-8 stays as it is


def _quoted(name: str) -> str:
    from layerctl.words import path_text

    return path_text(name.encode())


def test_control_character_names_are_quoted_in_container_output(cli, tmp_path):
    cli("import", small_tree(tmp_path / "a"), "img:1")
    root = vfs_container(cli, "names", "img:1")
    for name in NASTY:
        with open(os.path.join(os.fsencode(root), name), "wb") as f:
            f.write(b"text\n")
    _check_output(cli("status", "names").stdout, SHOWN)
    _check_output(cli("diff", "names").stdout, SHOWN)
    _check_output(cli("diff", "-p", "names").stdout, ['"b/x\\nD passwd"'])


def test_tui_entries_use_the_same_quoting(cli, store_root, tmp_path):
    from layerctl.images import resolve
    from layerctl.presentation.browse import LayerBrowser
    from layerctl.presentation.preview import describe_meta
    from layerctl.store.repo import Store

    src = _nasty_tree(tmp_path / "b")
    os.link(os.path.join(os.fsencode(src), FORGED), src / "zlink")  # a hardlink to it
    cli("import", src, "img:1")
    store = Store(str(store_root))
    try:
        b = LayerBrowser.for_layer(store, resolve(store, "img:1"))
        shown = {e.path_text for e in b.children()}
        names = {e.name_text for e in b.children()}
        link = describe_meta(b.entry(b"zlink").meta)
    finally:
        store.close()
    assert 'hardlink to "/x\\nD passwd"' in link
    assert set(SHOWN) <= shown
    assert '"x\\nD passwd"' in names
    assert not any("\n" in s or "\x1b" in s for s in shown | names)


def test_container_names_with_a_newline_are_refused(cli, tmp_path):
    cli("import", small_tree(tmp_path / "a"), "img:1")
    one_error_line(cli("create", "--name", "evil\n", "img:1", check=False),
                   "invalid container name")
    assert not any("evil" in n for n in container_names(cli))


# -- tags Docker allows and git refuses -------------------------------------------------


ODD_TAGS = ["1..2", "v1.", "x.lock", "a..b", "end...", "1.0"]


def test_tags_git_refuses_as_ref_names_work(cli, store_root, tmp_path):
    cli("import", small_tree(tmp_path / "a"), "img:1")
    names = [f"img:{t}" for t in ODD_TAGS] + ["lock.lock/x.lock:v2.", "localhost:5000/r.lock:a..b"]
    for n in names:
        cli("tag", "img:1", n)
    listed = _listed(cli)
    top = cli("log", "--oneline", "img:1").stdout[:12]
    for n in names:
        assert n in listed, (n, listed)
        assert cli("log", "--oneline", n).stdout[:12] == top
    # the refs are valid for git itself
    refs = subprocess.run(["git", "--git-dir", str(store_root), "for-each-ref",
                           "--format=%(refname)", "refs/images/"],
                          capture_output=True, text=True, check=True).stdout.split()
    for ref in refs:
        subprocess.run(["git", "check-ref-format", ref], check=True)
    assert "refs/images/img/_tags/1%2E%2E2" in refs
    # commit -t with such a tag, then rmi
    root = vfs_container(cli, "c", "img:1")
    (root / "new").write_text("x\n")
    cli("commit", "c", "img:v2.")
    assert "img:v2." in _listed(cli)
    for n in [*names, "img:v2."]:
        cli("rmi", n)
    assert _listed(cli) == {"img:1"}


def _listed(cli) -> set[str]:
    rows = [line.split() for line in cli("images").stdout.splitlines()[1:]]
    return {f"{row[0]}:{row[1]}" for row in rows}


def test_odd_tags_round_trip_through_a_git_remote(cli, store_root, tmp_path):
    cli("import", small_tree(tmp_path / "a"), "img:1")
    for t in ODD_TAGS:
        cli("tag", "img:1", f"img:{t}")
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    cli("remote", "add", "origin", str(remote))
    cli("push", "--git", "origin")
    cli("fetch", "origin", "img:1..2")  # one named image: selected by its ref
    other = tmp_path / "other"
    other.mkdir()
    env = {"LAYERCTL_ROOT": str(other)}
    cli("remote", "add", "origin", str(remote), env=env)
    cli("fetch", "origin", env=env)
    assert _listed(lambda *a: cli(*a, env=env)) == _listed(cli) == \
        {"img:1"} | {f"img:{t}" for t in ODD_TAGS}


def test_non_ascii_tags_and_names_are_refused(cli, tmp_path):
    from layerctl.images import parse_name
    from layerctl.oci.registry.reference import parse_reference

    cli("import", small_tree(tmp_path / "a"), "img:1")
    for bad in ("img:é", "img:v１", "café:1"):
        one_error_line(cli("tag", "img:1", bad, check=False), "ASCII only")
    for bad in ("img:é", "img:v１", "café:1", "img:1\n"):
        one_error_line(cli("tag", "img:1", bad, check=False), "invalid image name")
        with pytest.raises(InvalidName):
            parse_name(bad)
    for bad in ("img:é", "127.0.0.1:5000/img:ｖ1", "img:1\n"):
        with pytest.raises(InvalidName):
            parse_reference(bad)
    assert parse_reference("127.0.0.1:5000/img:1..2").tag == "1..2"


def test_refs_written_before_the_encoding_decode_the_same():
    from layerctl.images import ImageName, name_from_ref, parse_name

    old = {  # what the previous encoding wrote for names without odd dots
        "refs/images/img/_tags/1.0": ImageName("img", "1.0"),
        "refs/images/localhost%3A5000/a/b/_tags/v1": ImageName("localhost:5000/a/b", "v1"),
        "refs/images/%5B%3A%3A1%5D%3A5000/a/_tags/x": ImageName("[::1]:5000/a", "x"),
    }
    for ref, name in old.items():
        assert name_from_ref(ref) == name and name.ref == ref
    for text in ("a:1..2", "a:v1.", "a:x.lock", "x.lock/y.lock:z.lock", "[::1]:5000/a:b."):
        n = parse_name(text)
        assert name_from_ref(n.ref) == n


# -- one clear line instead of a traceback ------------------------------------------------


def test_bad_paths_and_roots_give_one_line(cli, store_root, tmp_path):
    cli("import", small_tree(tmp_path / "a"), "img:1")
    one_error_line(cli("checkout", "img:1", "", check=False), "empty path")
    one_error_line(cli("checkout", "img:1", "/proc/no/such/dir", check=False), "cannot create")
    one_error_line(cli("save", "-o", "", "img:1", check=False), "output path is empty")
    one_error_line(cli("export", "img:1", "-o", "", check=False), "output path is empty")
    afile = tmp_path / "afile"
    afile.write_text("x")
    for args in (("images",), ("ps",), ("log",), ("import", tmp_path / "a", "x:1")):
        one_error_line(cli("--root", afile, *args, check=False), "not a directory")
    notstore = tmp_path / "notstore"
    notstore.mkdir()
    (notstore / "data").write_text("x")
    one_error_line(cli("--root", notstore, "images", check=False), "not a layerctl store")
    assert sorted(os.listdir(notstore)) == ["data"]
    repo = tmp_path / "repo.git"
    subprocess.run(["git", "init", "-q", "--bare", str(repo)], check=True)
    before = sorted(os.listdir(repo))
    for args in (("images",), ("import", tmp_path / "a", "x:1")):
        one_error_line(cli("--root", repo, *args, check=False),
                       "git repository but not a layerctl store")
    assert sorted(os.listdir(repo)) == before


def _damage(store_root: Path, how: str, layer: str = "") -> None:
    if how.startswith("loose"):  # the layer's commit, a loose object
        obj = store_root / "objects" / layer[:2] / layer[2:]
        os.chmod(obj, 0o644)
        data = bytearray(obj.read_bytes())
        if how == "loose-empty":
            data = bytearray()
        for i in range(5, len(data) - 5, 3):
            data[i] ^= 0x55
        obj.write_bytes(bytes(data))
        return
    pack_dir = store_root / "objects" / "pack"
    (pack,) = pack_dir.glob("*.pack")
    if how == "truncate":
        os.truncate(pack, pack.stat().st_size // 2)
    elif how == "flip":
        data = bytearray(pack.read_bytes())
        for i in range(20, len(data) - 20, 7):
            data[i] ^= 0x55
        pack.write_bytes(bytes(data))
    else:
        (idx,) = pack_dir.glob("*.idx")
        os.truncate(idx, 100)


@pytest.mark.parametrize("how", ["truncate", "flip", "index", "loose-flip", "loose-empty"])
def test_damaged_store_gives_one_line(cli, store_root, tmp_path, how):
    src = small_tree(tmp_path / "a")
    cli("import", src, "img:1")
    layer = cli("history", "--no-trunc", "img:1").stdout.splitlines()[1].split()[0]
    if not how.startswith("loose"):
        subprocess.run(["git", "--git-dir", str(store_root), "repack", "-a", "-d", "-q"],
                       check=True)
    _damage(store_root, how, layer)
    for args in (("images",), ("log",), ("show", "img:1"), ("show", "img:1:etc/hostname"),
                 ("show", layer[:8]), ("checkout", "img:1", tmp_path / "out"),
                 ("history", "img:1"), ("create", "img:1")):
        one_error_line(cli(*args, check=False), "store is damaged", "layerctl fsck")


# -- runs: mount points, running containers -------------------------------------------


def _image_without_mount_points(cli) -> str:
    """The Debian corpus ("deb", from cli_deb) without /dev, /proc and /sys."""
    root = vfs_container(cli, "strip", "deb")
    for name in ("dev", "proc", "sys"):
        subprocess.run(["rm", "-rf", str(root / name)], check=True)
    cli("commit", "strip", "nodev:1")
    cli("rm", "-f", "strip")
    return "nodev:1"


@pytest.mark.timeout(300)
def test_run_without_dev_proc_sys_leaves_no_pending_changes(cli_deb):
    cli = cli_deb
    image = _image_without_mount_points(cli)
    for driver in ("vfs", "overlay"):
        name = f"run-{driver}"
        r = cli("run", "--driver", driver, "--name", name, image, "sh", "-c",
                "test -d /proc/self && test -d /sys/kernel && test -d /dev/pts", check=False)
        assert r.returncode == 0, r.stderr
        assert cli("status", name).stdout == "", driver
        assert cli("diff", name).stdout == ""
        # what the process really writes is still a change, in or out of those dirs
        cli("run", "--driver", driver, "--name", f"{name}-2", image, "sh", "-c",
            "echo x > /made")
        assert cli("status", f"{name}-2").stdout == "A /made\n"
        r = cli("commit", f"{name}-2", f"nodev:{driver}")
        assert cli("diff", image, f"nodev:{driver}").stdout.split("\n")[0] == "A /made"
        if driver == "vfs":
            d = Path(cli("mount", name).stdout.strip())
            (d / "proc" / "kept").write_text("x\n")
            assert cli("status", name).stdout == "A /proc\nA /proc/kept\n"


@pytest.mark.timeout(300)
def test_reset_of_a_running_container_is_refused(cli_deb):
    cli = cli_deb
    for driver in ("vfs", "overlay"):
        name = f"busy-{driver}"
        cli("run", "-d", "--driver", driver, "--name", name, "deb", "sh", "-c",
            "echo kept > /work; sleep 300")
        cli("exec", name, "sh", "-c", "echo more > /work2")
        one_error_line(cli("reset", name, check=False), "is running", "stop it")
        assert cli("exec", name, "cat", "/work", "/work2").stdout == "kept\nmore\n"
        assert cli("status", name).stdout == "A /work\nA /work2\n"
        cli("stop", "-t", "0", name)
        cli("reset", name)
        assert cli("status", name).stdout == ""


# -- status --watch follows commits made elsewhere --------------------------------------


class LineReader:
    """Lines of a child's stdout, read with a deadline (never a sleep)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc, self.buf, self.lines = proc, b"", []

    def until(self, wanted: str, timeout: float = 30) -> list[str]:
        import selectors
        import time

        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while wanted not in self.lines:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    raise AssertionError(f"no line {wanted!r} within {timeout}s: {self.lines}")
                data = os.read(self.proc.stdout.fileno(), 65536)
                if not data:
                    raise AssertionError(f"watch ended before {wanted!r}: {self.lines}")
                self.buf += data
                *done, self.buf = self.buf.split(b"\n")
                self.lines += [line.decode() for line in done]
        return self.lines


@pytest.mark.parametrize("driver", ["vfs", "overlay"])
def test_status_watch_drops_paths_committed_by_another_shell(cli, store_root, tmp_path,
                                                             driver):
    cli("import", small_tree(tmp_path / "src"), "img:1")
    cli("create", "--driver", driver, "--name", "w", "img:1")
    root = Path(cli("mount", "w").stdout.strip())
    try:
        (root / "a.txt").write_text("a\n")
        (root / "b.txt").write_text("b\n")
        proc = subprocess.Popen([sys.executable, "-m", "layerctl", "status", "--watch", "w"],
                                stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                env=_env(store_root))
        try:
            out = LineReader(proc)
            out.until("A /b.txt")
            assert "A /a.txt" in out.lines
            cli("commit", "w", "img:2", "--", "/a.txt")
            out.until("  /a.txt (no longer changed)")
            cli("commit", "w", "img:3")
            lines = out.until("  /b.txt (no longer changed)")
            (root / "c.txt").write_text("c\n")  # and it keeps watching the files
            lines = out.until("A /c.txt")
            assert "  /b.txt (no longer changed)" not in lines[:lines.index(
                "  /a.txt (no longer changed)")]
        finally:
            proc.kill()
            proc.wait()
            proc.stdout.close()
    finally:
        cli("umount", "w", check=False)


def test_messages_that_are_not_utf8_give_one_line(cli, store_root, tmp_path):
    src = small_tree(tmp_path / "a")
    bad = os.fsdecode(b"caf\xe9")  # Latin-1 bytes from a shell: surrogate escapes
    env = _env(store_root)
    for args in (["-m", bad], ["-a", f"{bad} <a@b>"]):
        r = subprocess.run([sys.executable, "-m", "layerctl", "import", str(src), "x:1", *args],
                           capture_output=True, text=True, env=env)
        one_error_line(r, "not valid UTF-8")
    assert "x " not in cli("images").stdout


@pytest.mark.needs_tool("docker-registry", "openssl")
def test_odd_tags_push_and_pull_through_a_registry(cli, tmp_path, monkeypatch):
    from tests.registryhelpers import Registry

    monkeypatch.setenv("LAYERCTL_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    cli("import", small_tree(tmp_path / "a"), "img:1")
    reg = Registry(tmp_path / "registry")
    try:
        reg.start()
        other = tmp_path / "other"
        other.mkdir()
        for tag in ("1..2", "v1.", "x.lock"):
            remote = f"{reg.host}/img:{tag}"
            cli("tag", "img:1", remote)
            cli("push", "-q", remote)
            cli("pull", "-q", remote, env={"LAYERCTL_ROOT": str(other)})
        pulled = _listed(lambda *a: cli(*a, env={"LAYERCTL_ROOT": str(other)}))
        assert pulled == {f"{reg.host}/img:{t}" for t in ("1..2", "v1.", "x.lock")}
    finally:
        reg.stop()


def test_table_cells_cannot_break_their_line(cli, tmp_path):
    cli("import", small_tree(tmp_path / "a"), "img:1", "-m", "\x1b[2Jwiped\ttab\x7f")
    out = cli("history", "img:1").stdout
    assert "\x1b" not in out and "\x7f" not in out and "\t" not in out
    assert "\\033[2Jwiped\\ttab\\177" in out


# -- blobs read in pieces -------------------------------------------------------------


def test_blob_pieces_match_whole_reads_for_loose_packed_and_delta_objects(store_root,
                                                                          tmp_path):
    from layerctl.errors import Corrupt
    from layerctl.store.blobstream import iter_blob, read_head
    from layerctl.store.objects import BLOB
    from layerctl.store.repo import Store

    base = os.urandom(300_000)
    datas = [b"", b"x", base, base[:150_000] + b"changed" + base[150_000:], b"\0" * 3_000_000]
    store = Store(str(store_root))
    try:
        loose = [store.add_object(BLOB, d) for d in datas]
        for sha, data in zip(loose, datas, strict=True):
            assert b"".join(iter_blob(store, sha, 4096)) == data
            assert read_head(store, sha, 10) == data[:10]
        git = ["git", "--git-dir", str(store_root)]
        subprocess.run([*git, "pack-objects", "-q", str(store_root / "objects" / "pack" / "pack")],
                       input="".join(sha.hex() + "\n" for sha in loose), text=True,
                       check=True, capture_output=True)
        subprocess.run([*git, "prune-packed"], check=True)
        kinds = subprocess.run(["git", "--git-dir", str(store_root), "verify-pack", "-v",
                                *map(str, (store_root / "objects" / "pack").glob("*.idx"))],
                               capture_output=True, text=True, check=True).stdout
        assert any(len(line.split()) > 6 for line in kinds.splitlines()
                   if " blob " in line), "git made no delta: the delta path is not covered"
    finally:
        store.close()
    store = Store(str(store_root))
    try:
        for sha, data in zip(loose, datas, strict=True):
            pieces = list(iter_blob(store, sha, 4096))
            assert b"".join(pieces) == data
        (pack,) = (store_root / "objects" / "pack").glob("*.pack")
        raw = bytearray(pack.read_bytes())
        for i in range(40, len(raw) - 40, 5):
            raw[i] ^= 0xFF
        pack.write_bytes(bytes(raw))
        store.close()
        store = Store(str(store_root))
        with pytest.raises(Corrupt, match="store is damaged"):
            b"".join(iter_blob(store, loose[4]))
    finally:
        store.close()


def test_status_json_keeps_names_as_they_are(cli, tmp_path):
    import json

    cli("import", small_tree(tmp_path / "a"), "img:1")
    root = vfs_container(cli, "js", "img:1")
    (root / "a\nb").write_text("x\n")
    (root / 'q"').write_text("x\n")
    paths = {item["Path"] for item in json.loads(cli("status", "--json", "js").stdout)}
    assert paths == {"/a\nb", '/q"'}


def test_patch_does_not_trust_the_recorded_size(store_root):
    """A record (from a hostile remote, say) that claims a small size for a big blob
    still gets a bounded read."""
    from layerctl.patch import PATCH_MAX_BYTES, render_patch
    from layerctl.store.diff import Change
    from layerctl.store.meta import Meta
    from layerctl.store.objects import BLOB
    from layerctl.store.repo import Store

    store = Store(str(store_root))
    try:
        big = store.add_object(BLOB, b"a\n" * (PATCH_MAX_BYTES // 2 + 10))
        small = store.add_object(BLOB, b"a\n")
        liar = Meta("-", 0o644, size=2)
        lines = render_patch(Change(b"f", "C", old=liar, new=liar, old_blob=small,
                                    new_blob=big), store)
    finally:
        store.close()
    assert lines[-1] == ("Binary files a/f and b/f differ "
                         f"(too large to show: over {PATCH_MAX_BYTES} bytes)")


def _previews_cursor(tree, preview) -> bool:
    node = tree.cursor_node
    entry = node.data if node is not None else None
    return (entry is not None and preview.current is not None
            and preview.current.title.startswith(entry.path_text))


def test_tui_shows_names_that_look_like_markup_or_controls(cli, store_root, tmp_path,
                                                           monkeypatch):
    import asyncio

    from textual.content import Content

    from layerctl.store.repo import Store
    from layerctl.tui.app import LayerctlApp
    from layerctl.tui.widgets.files import FileTree
    from layerctl.tui.widgets.preview import FilePreview
    from tests.tuihelpers import wait_for

    monkeypatch.setenv("LAYERCTL_CONFIG", str(tmp_path / "config.toml"))
    src = _nasty_tree(tmp_path / "src")
    for name in ("[link=x:y]q", "[red]x", "[@click=app.quit]z"):  # the first breaks markup
        (src / name).write_text("text\n")
    cli("import", src, "img:1")

    async def drive() -> list[str]:
        store = Store(str(store_root))
        titles = []
        try:
            app = LayerctlApp(store, image="img:1")
            async with app.run_test(size=(160, 48)) as pilot:
                tree = app.screen.query_one(FileTree)
                preview = app.screen.query_one(FilePreview)
                await wait_for(pilot, lambda: len(tree.root.children) >= 5, what="the tree")
                tree.focus()
                for _ in range(len(tree.root.children)):
                    await pilot.press("down")
                    # the preview is read in a worker: wait for the one of this entry
                    await wait_for(pilot, lambda: _previews_cursor(tree, preview),
                                   what="the preview of the highlighted entry")
                    title = preview.border_title  # as markup
                    titles.append(Content.from_markup(title).plain)
        finally:
            store.close()
        return titles

    titles = asyncio.run(drive())
    joined = "\n".join(titles)
    assert "/[link=x:y]q" in joined and "/[red]x" in joined, titles
    assert "/[@click=app.quit]z" in joined
    assert '"/x\\nD passwd"' in joined and "\x1b" not in joined
