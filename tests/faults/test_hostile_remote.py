"""A hostile git remote: layer objects crafted by hand (dulwich), served over a local
path and over `git daemon` on 127.0.0.1. Fetch refuses them by name and moves no
ref; fsck flags them once they are in the store anyway; checkout (and the overlay
layer cache) never writes or links outside its target."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from layerctl.store.names import escape
from layerctl.store.objects import serialize_tree
from layerctl.store.repo import Store
from tests.githelpers import git
from tests.layerhelpers import import_dir

MODE_FILE, MODE_TREE, MODE_LINK = b"100644", b"40000", b"120000"
STAMP = "0.000000000"
ROOT_LINE = f". d 0755 0:0 {STAMP}"
KEEP = "refs/images/keep/_tags/1"


class Forge:
    """Writes raw git objects into a bare repository, with no checks at all."""

    def __init__(self, path: Path) -> None:
        from dulwich.repo import Repo

        self.repo = Repo(str(path))

    def add(self, type_num: int, raw: bytes) -> bytes:
        from dulwich.objects import ShaFile

        obj = ShaFile.from_raw_string(type_num, raw)
        self.repo.object_store.add_object(obj)
        return bytes.fromhex(obj.id.decode())

    def blob(self, data: bytes) -> bytes:
        return self.add(3, data)

    def tree(self, entries: list[tuple[bytes, bytes, bytes]]) -> bytes:
        return self.add(2, serialize_tree(entries))  # sorts, checks nothing

    def directory(self, files: dict, records: list[str], more: list = ()) -> tuple[bytes, bytes]:
        """(rootfs, meta) trees: `files` maps a raw entry name to (mode, content) or to a
        subdirectory (rootfs, meta) pair; `records` are the record lines after '.';
        `more`: further (name, value) pairs, names repeated."""
        rootfs, meta = [], []
        files = [*files.items(), *more]
        for name, value in files:
            if len(value[0]) == 20:  # a subdirectory's (rootfs, meta)
                rootfs.append((name, MODE_TREE, value[0]))
                meta.append((name, MODE_TREE, value[1]))
            else:
                rootfs.append((name, value[0], self.blob(value[1])))
        record = "\n".join([ROOT_LINE, *records]) + "\n"
        meta.append((b"%", MODE_FILE, self.blob(record.encode())))
        return self.tree(rootfs), self.tree(meta)

    def commit(self, top: bytes, parent: str | None = None, message: str = "evil") -> str:
        lines = [f"tree {top.hex()}"] + ([f"parent {parent}"] if parent else [])
        lines += ["author Mallory <m@example.com> 0 +0000",
                  "committer layerctl <layerctl@localhost> 0 +0000", "", message, ""]  # fmt: skip
        return self.add(1, "\n".join(lines).encode()).hex()

    def layer(self, files: dict, records: list[str], config: bytes = b"{}\n",
              extra: list | None = None, parent: str | None = None,
              message: str = "evil", more: list = ()) -> str:  # fmt: skip
        rootfs, meta = self.directory(files, records, more)
        top = self.tree(
            [(b"config.json", MODE_FILE, self.blob(config)), (b"meta", MODE_TREE, meta),
             (b"rootfs", MODE_TREE, rootfs), *(extra or [])]
        )  # fmt: skip
        return self.commit(top, parent, message)

    def ref(self, name: str, sha: str) -> None:
        self.repo.refs[name.encode()] = sha.encode()


def file_line(name: bytes, size: int, extra: str = "") -> str:
    return f"{escape(name)} - 0644 0:0 {STAMP} size={size}" + (f" {extra}" if extra else "")


@pytest.fixture
def local(tmp_path, store_root):
    """The victim's store, holding keep:1, and a canary directory next to it."""
    src = tmp_path / "keep-src"
    src.mkdir()
    (src / "f").write_text("keep\n")
    store = Store(str(store_root))
    layer = import_dir(store, src, "keep:1")
    store.close()
    canary = tmp_path / "canary"
    canary.mkdir()
    (canary / "host-secret").write_text("host secret\n")
    return layer, canary


def _evil_remote(path: Path) -> Forge:
    git("init", "-q", "--bare", path)
    return Forge(path)


def _attacks(forge: Forge, canary: Path) -> dict[str, tuple[str, str]]:
    """name -> (ref, words the refusal must contain): one image per attack class."""
    outside = os.fsencode(canary / "written")
    secret = os.fsencode(canary / "host-secret")
    mangled_abs = b"%" + b"".join(b"%%%02X" % c for c in outside)  # decodes to an absolute path
    attacks = {
        # a mangled name that decodes to an absolute path
        "absname": ({mangled_abs: (MODE_FILE, b"pwned\n")}, [file_line(outside, 6)], "'/'"),
        # a raw '/' in a tree entry name
        "slash": ({b"a/../../w": (MODE_FILE, b"pwned\n")}, [file_line(b"a/../../w", 6)], "'/'"),
        # link= to a host file by absolute path
        "linkabs": (
            {b"a": (MODE_FILE, b"x\n"), b"b": (MODE_FILE, b"x\n")},
            [file_line(b"a", 2), file_line(b"b", 2, "link=" + escape(secret))],
            "absolute path",
        ),
        # link= climbing out of the target
        "linkdotdot": (
            {b"a": (MODE_FILE, b"x\n"), b"b": (MODE_FILE, b"x\n")},
            [file_line(b"a", 2), file_line(b"b", 2, "link=../../canary/host-secret")],
            "'..'",
        ),
        # link= to a later entry (not yet written when the link is made)
        "linklater": (
            {b"a": (MODE_FILE, b"x\n"), b"b": (MODE_FILE, b"x\n")},
            [file_line(b"a", 2, "link=b"), file_line(b"b", 2)],
            "not an earlier entry",
        ),
        # a record whose size lies about the blob
        "size": ({b"a": (MODE_FILE, b"four")}, [file_line(b"a", 9999)], "size=9999"),
        # rdev on a regular file, a mode out of range
        "rdev": ({b"a": (MODE_FILE, b"")}, [file_line(b"a", 0, "rdev=1,3")], "rdev"),
        "mode": ({b"a": (MODE_FILE, b"")}, [f"a - 17777777 0:0 {STAMP} size=0"], "mode"),
    }
    # a '..' directory (mangled, as git needs it) holding a file: checkout writes dest/../w
    sub = forge.directory({b"w": (MODE_FILE, b"pwned\n")}, [file_line(b"w", 6)])
    attacks["dotdot"] = ({b"%..": sub}, [], "name '..'")
    # a needless mangling ("2E."): two entries could decode to one name
    attacks["noncanon"] = ({b"%2E%2E": sub}, [], "not in canonical form")
    two = {b"a": (MODE_FILE, b"x\n"), b"b": (MODE_FILE, b"x\n")}
    attacks.update({
        "linkdir": ({b"d": sub, b"z": (MODE_FILE, b"x\n")},
                    [file_line(b"z", 2, "link=d")], "is not a file of this layer"),
        "linkself": ({b"a": (MODE_FILE, b"x\n")}, [file_line(b"a", 2, "link=a")],
                     "not an earlier entry"),
        "devcontent": ({b"null": (MODE_FILE, b"data")},
                       [f"null c 0666 0:0 {STAMP} rdev=1,3"], "entry with content"),
        "gitlink": ({b"sub": (b"160000", b"x")}, [file_line(b"sub", 1)], "mode 160000"),
        "xattr": (two, [file_line(b"a", 2, "x:foo=bar"), file_line(b"b", 2)], "xattr name"),
        "owner": ({b"a": (MODE_FILE, b"")}, [f"a - 0644 4294967295:0 {STAMP} size=0"],
                  "owner"),
        "dirtype": ({b"a": (MODE_FILE, b"")}, [f"a d 0755 0:0 {STAMP}"], "type 'd'"),
        "symlinknul": ({b"s": (MODE_LINK, b"/etc\0x")}, [f"s l 0777 0:0 {STAMP}"],
                       "holding NUL"),
        "bigxattr": ({b"a": (MODE_FILE, b"")},
                     [file_line(b"a", 0, "x:user.big=" + escape(b"x" * 70000))], "value of"),
    })  # fmt: skip
    out = {}
    for name, (files, records, words) in attacks.items():
        ref = f"refs/images/evil/{name}/_tags/1"
        forge.ref(ref, forge.layer(files, records))
        out[name] = (ref, words)
    # whole-layer shapes: an extra top entry, a config that is no object, a bad parent
    good = ({b"a": (MODE_FILE, b"ok\n")}, [file_line(b"a", 3)])
    readme = (b"README", MODE_FILE, forge.blob(b"hi\n"))
    bad_parent = forge.layer(*attacks["absname"][:2])
    for name, kwargs, words in (
        ("extratop", {"extra": [readme]}, "not a layer"),
        ("config", {"config": b"[1]"}, "config.json is not a JSON object"),
        ("badparent", {"parent": bad_parent}, f"layer {bad_parent[:12]}"),
        ("trailer", {"message": "evil\n\nSize: lots"}, "trailer Size"),
        # a file and a directory of the same name: checkout would write the pair twice
        ("dupname", {"more": [(b"a", sub)]}, "appears twice"),
    ):
        ref = f"refs/images/evil/{name}/_tags/1"
        forge.ref(ref, forge.layer(*good, **kwargs))
        out[name] = (ref, words)
    return out


def _refs(store_root: Path) -> str:
    return git("--git-dir", store_root, "for-each-ref", "--format=%(refname) %(objectname)")


def _assert_refused(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("layerctl: git remote "), proc.stderr
    assert "refusing" in proc.stderr and "no image was changed" in proc.stderr
    for word in words:
        assert word in proc.stderr, proc.stderr


def test_fetch_refuses_each_hostile_layer(cli, local, tmp_path, store_root):
    _keep, canary = local
    remote = tmp_path / "evil.git"
    forge = _evil_remote(remote)
    attacks = _attacks(forge, canary)
    before = _refs(store_root)
    for name, (ref, words) in attacks.items():
        image = ref[len("refs/images/") :].replace("/_tags/", ":")
        proc = cli("fetch", remote, image, check=False)
        _assert_refused(proc, ref, words)
        assert _refs(store_root) == before, name
    # all at once: still nothing moves
    _assert_refused(cli("fetch", remote, check=False))
    assert _refs(store_root) == before
    assert sorted(os.listdir(canary)) == ["host-secret"]
    assert "keep" in cli("images").stdout
    cli("fsck")  # the refused objects are in the store, but nothing points at them


def test_fetch_refuses_bad_refs_by_name(cli, local, tmp_path, store_root):
    keep, _canary = local
    remote = tmp_path / "evil.git"
    forge = _evil_remote(remote)
    good = forge.layer({b"a": (MODE_FILE, b"ok\n")}, [file_line(b"a", 3)])
    blob = forge.blob(b"just a blob\n").hex()
    not_layer = forge.commit(forge.tree([(b"README", MODE_FILE, forge.blob(b"hi\n"))]))
    forge.ref("refs/images/good/_tags/1", good)
    forge.ref("refs/heads/main", good)  # not an image ref: never taken
    before = _refs(store_root)
    cases = {
        "refs/images/Upper/_tags/1": "not an image name",
        "refs/images/no-tag-dir": "not an image tag ref",
        "refs/images/a/_tags/-x": "not an image name",
    }
    for ref, words in cases.items():
        forge.ref(ref, good)
        proc = cli("fetch", remote, check=False)
        _assert_refused(proc, ref, words)
        assert _refs(store_root) == before
        forge.repo.refs.remove_if_equals(ref.encode(), None)
    for ref, target, words in (
        ("refs/images/blob/_tags/1", blob, "is not a commit"),
        ("refs/images/notlayer/_tags/1", not_layer, "not a layer"),
    ):
        forge.ref(ref, target)
        proc = cli("fetch", remote, check=False)
        _assert_refused(proc, ref, words)
        assert _refs(store_root) == before
        forge.repo.refs.remove_if_equals(ref.encode(), None)
    # once the remote is clean the good image comes, and only the image refs
    out = cli("fetch", remote).stdout
    assert " * [new image]         good:1" in out
    assert "refs/heads/main" not in _refs(store_root)
    assert cli("images").stdout.count("\n") == 3  # header, good, keep
    git("--git-dir", store_root, "fsck", "--strict", "--no-dangling")
    assert keep in _refs(store_root)


def test_fetch_over_git_daemon_refuses(cli, local, git_daemon, tmp_path, store_root):  # noqa: F811
    _keep, canary = local
    url, served = git_daemon
    attacks = _attacks(Forge(served), canary)
    before = _refs(store_root)
    for name in ("absname", "linkabs", "dotdot"):
        ref, words = attacks[name]
        image = ref[len("refs/images/") :].replace("/_tags/", ":")
        _assert_refused(cli("fetch", url, image, check=False), words)
    _assert_refused(cli("fetch", url, check=False))
    assert _refs(store_root) == before
    assert sorted(os.listdir(canary)) == ["host-secret"]


def _plant(store_root: Path, remote: Path, ref: str) -> None:
    """Put a hostile layer in the store behind layerctl's back (stock git fetch)."""
    git("--git-dir", store_root, "fetch", "-q", str(remote), f"{ref}:{ref}")


PLANTED = ["absname", "dotdot", "linkabs", "linkdotdot", "linklater", "linkdir", "linkself",
           "dupname"]  # fmt: skip


@pytest.mark.parametrize("attack", PLANTED)
def test_planted_layer_fsck_flags(cli, local, tmp_path, store_root, attack):
    _keep, canary = local
    remote = tmp_path / "evil.git"
    ref, words = _attacks(_evil_remote(remote), canary)[attack]
    _plant(store_root, remote, ref)
    fsck = cli("fsck", check=False)
    assert fsck.returncode == 1 and "Traceback" not in fsck.stderr
    assert ref in fsck.stdout and words in fsck.stdout, fsck.stdout
    assert "keep" in cli("images").stdout


@pytest.mark.parametrize("attack", PLANTED)
def test_planted_layer_checkout_refuses(cli, local, tmp_path, store_root, attack):
    _keep, canary = local
    remote = tmp_path / "evil.git"
    ref, _words = _attacks(_evil_remote(remote), canary)[attack]
    _plant(store_root, remote, ref)
    image = ref[len("refs/images/") :].replace("/_tags/", ":")
    dest = tmp_path / "co" / "target"
    proc = cli("checkout", image, dest, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "refusing to check out" in proc.stderr and proc.stderr.count("\n") == 1
    assert not dest.exists()  # nothing half written
    assert sorted(os.listdir(canary)) == ["host-secret"]
    assert not (tmp_path / "co" / "w").exists()
    assert (canary / "host-secret").stat().st_nlink == 1


def test_planted_layer_cannot_escape_the_layer_cache(cli, local, tmp_path, store_root, needs_root):
    _keep, canary = local
    remote = tmp_path / "evil.git"
    ref, _ = _attacks(_evil_remote(remote), canary)["linkabs"]
    _plant(store_root, remote, ref)
    proc = cli("create", "evil/linkabs:1", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    # the layer dir builder refuses the link out of the layer (one line, no traceback)
    assert "hardlink group" in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert (canary / "host-secret").stat().st_nlink == 1
    for cache in (store_root / "cache" / "layers", store_root / "cache" / "overlay"):
        made = [p.name for p in cache.iterdir() if p.name != "l"] if cache.exists() else []
        assert made == [], made  # no lower or layer dir, whole or half made
    assert cli("ps", "-a").stdout.count("\n") <= 1  # and no container


def test_hardlinked_symlink_is_linked_not_followed(cli, local, tmp_path, store_root):
    """A hardlink group of symlinks is legitimate (tar has it); checkout must link the
    symlink itself, never the host file it points at."""
    _keep, canary = local
    remote = tmp_path / "evil.git"
    forge = _evil_remote(remote)
    target = canary / "host-secret"
    layer = forge.layer(
        {b"a": (MODE_LINK, os.fsencode(target)), b"b": (MODE_LINK, os.fsencode(target))},
        [f"a l 0777 0:0 {STAMP}", f"b l 0777 0:0 {STAMP} link=a"],
    )
    forge.ref("refs/images/symgroup/_tags/1", layer)
    cli("fetch", remote)  # valid: fetched
    dest = tmp_path / "co"
    cli("checkout", "symgroup:1", dest)
    assert os.readlink(dest / "b") == str(target)
    assert os.lstat(dest / "a").st_ino == os.lstat(dest / "b").st_ino
    assert target.stat().st_nlink == 1
    cli("fsck")
    git("--git-dir", store_root, "fsck", "--strict", "--no-dangling")


def test_malformed_ref_does_not_break_images(cli, local, tmp_path, store_root):
    keep, _canary = local
    blob = subprocess.run(
        ["git", "--git-dir", str(store_root), "hash-object", "-w", "--stdin"],
        input=b"not a layer\n", capture_output=True, check=True,
    ).stdout.decode().strip()  # fmt: skip
    git("--git-dir", store_root, "update-ref", "refs/images/Bad/_tags/1", keep)
    git("--git-dir", store_root, "update-ref", "refs/images/blob/_tags/1", blob)
    proc = cli("images")
    assert "keep" in proc.stdout and "Bad" not in proc.stdout and "blob" not in proc.stdout
    assert "refs/images/Bad/_tags/1" in proc.stderr and "blob:1" in proc.stderr
    assert "Traceback" not in proc.stderr
    log = cli("log", "--oneline")
    assert keep[:7] in log.stdout and "blob" not in log.stdout
    assert "warning: skipping" in log.stderr and "Traceback" not in log.stderr
    fsck = cli("fsck", check=False)
    assert fsck.returncode == 1
    assert "refs/images/Bad/_tags/1: not an image name" in fsck.stdout
    assert "refs/images/blob/_tags/1" in fsck.stdout and "is not a commit" in fsck.stdout


def test_objects_already_in_the_store_are_still_validated(cli, local, tmp_path, store_root):
    """A layer's objects being present (an earlier refused fetch, a stock git fetch)
    does not make it trusted: only layers the store's own refs reach are."""
    _keep, canary = local
    remote = tmp_path / "evil.git"
    ref, words = _attacks(_evil_remote(remote), canary)["linkabs"]
    git("--git-dir", store_root, "fetch", "-q", str(remote), f"{ref}:refs/tmp/x")
    git("--git-dir", store_root, "update-ref", "-d", "refs/tmp/x")
    before = _refs(store_root)
    image = ref[len("refs/images/") :].replace("/_tags/", ":")
    _assert_refused(cli("fetch", remote, image, check=False), ref, words)
    assert _refs(store_root) == before


def test_killed_between_objects_and_refs(cli, local, tmp_path, store_root):
    """A fetch killed after its objects landed, before validation ends: no ref, both
    fscks pass, and the next fetch works."""
    remote = tmp_path / "good.git"
    forge = _evil_remote(remote)
    forge.ref("refs/images/good/_tags/1", forge.layer({b"a": (MODE_FILE, b"ok\n")},
                                                      [file_line(b"a", 3)]))  # fmt: skip
    before = _refs(store_root)
    killed = cli("fetch", remote, check=False, env={"LAYERCTL_CRASH_AT": "fetch.validate"})
    assert killed.returncode == -9
    assert _refs(store_root) == before
    cli("fsck")
    git("--git-dir", store_root, "fsck", "--strict", "--no-dangling")
    assert " * [new image]         good:1" in cli("fetch", remote).stdout


def test_git_fsck_strict_cannot_see_these(cli, local, tmp_path, store_root):
    """Stock `git fsck --strict` accepts every attack but a raw '/' name and a repeated
    name (an escape path, a link to a host file, a '..' directory): layerctl's own
    rules refuse them, and the store, holding the refused objects, still passes git's
    check."""
    _keep, canary = local
    remote = tmp_path / "evil.git"
    attacks = _attacks(_evil_remote(remote), canary)
    for name in ("slash", "dupname"):  # the two git itself refuses
        git("--git-dir", remote, "update-ref", "-d", attacks[name][0])
    git("--git-dir", remote, "prune", "--expire=now")
    git("--git-dir", remote, "fsck", "--strict", "--no-dangling")
    before = _refs(store_root)
    _assert_refused(cli("fetch", remote, check=False))
    assert _refs(store_root) == before
    git("--git-dir", store_root, "fsck", "--strict", "--no-dangling")
    cli("fsck")


def test_every_layer_layerctl_makes_passes(cli, tmp_path, store_root, debian_rootfs):
    """The rules are not stricter than layerctl itself: a tree with every kind of entry
    (hardlinks, devices, fifos, xattrs, setuid, odd names) and a tar with hardlinked
    symlinks go through push and fetch; the Debian corpus passes fsck."""
    import tarfile

    from tests.interchange_helpers import make_tree

    make_tree(tmp_path / "odd")
    cli("import", tmp_path / "odd", "odd:1")
    cli("import", debian_rootfs, "deb:1")
    assert cli("fsck").stdout.startswith("ok: ")  # fsck runs the same rules as fetch
    tar_path = tmp_path / "links.tar"
    with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, target in (("s", tarfile.SYMTYPE, "/etc/passwd"),
                                   ("s2", tarfile.LNKTYPE, "s"),
                                   ("z", tarfile.DIRTYPE, ""),
                                   ("z/s3", tarfile.LNKTYPE, "s")):  # fmt: skip
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            tar.addfile(info)
    cli("import", tar_path, "links:1")
    bare = tmp_path / "hub.git"
    git("init", "-q", "--bare", bare)
    cli("push", "--git", bare, "odd:1")
    cli("push", "--git", bare, "links:1")
    other = {"LAYERCTL_ROOT": str(tmp_path / "other")}
    out = cli("fetch", bare, env=other).stdout
    assert all(f" * [new image]         {n}:1" in out for n in ("links", "odd")), out
    assert cli("fsck", env=other).stdout.startswith("ok: ")
    co = tmp_path / "co"
    cli("checkout", "links:1", co, env=other)
    assert os.lstat(co / "s").st_ino == os.lstat(co / "z" / "s3").st_ino
