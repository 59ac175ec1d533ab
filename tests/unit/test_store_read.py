"""The start-up readers (store/packs.py, store/refread.py, layers._parse_commit) read
what git writes, checked object by object against `git cat-file` and ref by ref
against `git for-each-ref`: packs with OFS and REF deltas, index versions 1 and 2,
64-bit offsets, packed and symbolic refs, signed commits and odd time zones."""

from __future__ import annotations

import os
import struct
import subprocess
from pathlib import Path

import pytest

from layerctl.errors import Corrupt
from layerctl.store.blobstream import read_head
from layerctl.store.layers import _parse_commit
from layerctl.store.packs import Pack, PackIndex, apply_delta, pack_bases
from layerctl.store.refread import RefReader, valid_ref_name
from layerctl.store.repo import Store
from tests import githelpers

GIT_ENV = {**githelpers.GIT_ENV, "GIT_AUTHOR_NAME": "A U Thor", "GIT_AUTHOR_EMAIL": "a@example.com",
           "GIT_COMMITTER_NAME": "C", "GIT_COMMITTER_EMAIL": "c@example.com"}
TYPES = {"commit": 1, "tree": 2, "blob": 3, "tag": 4}


def git(repo: Path, *args: str, input: bytes | None = None, env: dict | None = None) -> bytes:
    return subprocess.run(["git", "-C", str(repo), *args], input=input, check=True,
                          capture_output=True, env={**GIT_ENV, **(env or {})}).stdout


@pytest.fixture
def history(tmp_path: Path) -> Path:
    """A repository whose files change a little per commit, so repack makes deltas."""
    repo = tmp_path / "repo"
    git(tmp_path, "init", "-q", str(repo))
    text = b"".join(b"line %d of a file that deltas well\n" % i for i in range(400))
    for n in range(6):
        (repo / "a.txt").write_bytes(text + b"edit %d\n" % n)
        (repo / "b.txt").write_bytes(text[n * 100:] + b"tail %d\n" % n)
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", f"commit {n}",
            env={"GIT_AUTHOR_DATE": f"{1_600_000_000 + n} -0130"})
    return repo


def all_objects(repo: Path) -> dict[bytes, tuple[int, bytes]]:
    listing = git(repo, "cat-file", "--batch-all-objects", "--batch-check").split(b"\n")
    out = {}
    for line in filter(None, listing):
        sha, kind, _size = line.split()
        body = git(repo, "cat-file", kind.decode(), sha.decode())
        out[bytes.fromhex(sha.decode())] = (TYPES[kind.decode()], body)
    return out


def repack(repo: Path, *args: str) -> list[str]:
    git(repo, "repack", "-adq", "-f", "--depth=50", *args)
    return pack_bases(str(repo / ".git" / "objects" / "pack"))


def read_everything(repo: Path, bases: list[str]) -> dict[bytes, tuple[int, bytes]]:
    packs = [Pack(b) for b in bases]
    got = {}

    def read_raw(binsha: bytes) -> tuple[int, bytes]:
        for pack in packs:
            found = pack.read(binsha, read_raw)
            if found is not None:
                return found
        raise KeyError(binsha.hex())

    try:
        for binsha in all_objects(repo):
            got[binsha] = read_raw(binsha)
    finally:
        for pack in packs:
            pack.close()
    return got


@pytest.mark.parametrize("variant", ["ofs-delta", "ref-delta", "index-v1", "large-offsets"])
def test_pack_reader_reads_every_object_as_git_does(history: Path, variant: str) -> None:
    bases = repack(history)
    assert len(bases) == 1
    expected = all_objects(history)
    assert len(expected) > 20
    listing = git(history, "verify-pack", "-v", bases[0] + ".idx").decode().splitlines()
    assert any(len(line.split()) == 7 for line in listing), "no deltas: the test is moot"
    if variant == "ref-delta":  # pack-objects without --delta-base-offset writes REF_DELTA
        ids = git(history, "show-index", input=Path(bases[0] + ".idx").read_bytes())
        names = b"\n".join(line.split()[1] for line in ids.splitlines())
        out = git(history, "pack-objects", "-q", "--no-reuse-delta", "--depth=50",
                  str(history / "rd"), input=names + b"\n").strip().decode()
        new = os.path.join(os.path.dirname(bases[0]), f"pack-{out}")
        for ext in (".pack", ".idx"):
            os.remove(bases[0] + ext)
            os.rename(history / f"rd-{out}{ext}", new + ext)
        bases = [new]
    elif variant in ("index-v1", "large-offsets"):
        # 2,1000: offsets past 1000 go to the table of 8-byte offsets
        version = "1" if variant == "index-v1" else "2,1000"
        idx = Path(bases[0] + ".idx")
        idx.unlink()
        git(history, "index-pack", f"--index-version={version}", "-o", str(idx),
            bases[0] + ".pack")
        n = len(expected)
        small = 1024 + n * 24 + 40 if variant == "index-v1" else 8 + 1024 + n * 28 + 40
        large = (idx.stat().st_size - small) // 8
        assert large == 0 if variant == "index-v1" else 0 < large < n
    assert all_objects(history) == expected  # git reads the rewritten pack and index
    assert read_everything(history, bases) == expected


def test_store_reads_objects_through_its_own_packs(history: Path, tmp_path: Path) -> None:
    """A layerctl store reads a git-made delta pack copied in, and finds a pack that
    lands after its first read (what dulwich's rescan did)."""
    store = Store(str(tmp_path / "store"))
    try:
        expected = all_objects(history)
        first, *rest = list(expected)
        [base] = repack(history)
        dest = os.path.join(store.root, "objects", "pack", os.path.basename(base))
        for ext in (".pack", ".idx"):
            os.link(base + ext, dest + ext)
        assert store.read_raw(first) == expected[first]
        assert all(store.read_raw(sha) == expected[sha] for sha in rest)
        with pytest.raises(Corrupt, match="missing"):
            store.read_raw(b"\1" * 20)
    finally:
        store.close()


def test_damaged_pack_is_reported_as_damage(history: Path, tmp_path: Path) -> None:
    store = Store(str(tmp_path / "store"))
    try:
        [base] = repack(history)
        dest = os.path.join(store.root, "objects", "pack", os.path.basename(base))
        data = bytearray(Path(base + ".pack").read_bytes())
        data[40:] = bytes(len(data) - 40)  # every object's zlib stream is zeros
        Path(dest + ".pack").write_bytes(data)
        os.link(base + ".idx", dest + ".idx")
        sha = next(iter(all_objects(history)))
        with pytest.raises(Corrupt, match="damaged"):
            store.read_raw(sha)
    finally:
        store.close()


def _v2_index(path: Path, ids: list[bytes]) -> dict[bytes, int]:
    """A version 2 pack index holding `ids` at made-up offsets (PackIndex needs no pack
    to find an offset); returns id -> offset."""
    ids = sorted(ids)
    fanout = [sum(1 for i in ids if i[0] <= b) for b in range(256)]
    offsets = {sha: 12 + 7 * n for n, sha in enumerate(ids)}
    path.write_bytes(b"\377tOc" + struct.pack(">L", 2) + struct.pack(">256L", *fanout)
                     + b"".join(ids) + bytes(4 * len(ids))
                     + b"".join(struct.pack(">L", offsets[i]) for i in ids) + bytes(40))
    return offsets


def test_index_scan_finds_each_id_and_no_id_across_two(tmp_path: Path) -> None:
    """The ids sharing a first byte are scanned in one piece: a match that starts inside
    one id and ends in the next is no id; a bucket too big to scan is searched."""
    a = bytes([5]) + bytes(18) + bytes([5])
    b = bytes([5, 1]) + bytes(range(2, 20))
    across = a[19:] + b[:19]  # starts with 5 too: the scan meets it at a's last byte
    crowded = [bytes([7]) + n.to_bytes(19, "big") for n in range(1, 1500)]  # > _SCAN_IDS
    ids = [a, b, bytes([4]) * 20, bytes([255]) * 20, bytes(20), *crowded]
    offsets = _v2_index(tmp_path / "i.idx", ids)
    index = PackIndex(str(tmp_path / "i.idx"))
    try:
        assert across not in offsets and across in a + b
        assert index.offset(across) is None
        assert all(index.offset(sha) == off for sha, off in offsets.items())
        assert index.offset(bytes([7]) + bytes(19)) is None  # before the crowded bucket
        assert index.offset(bytes([6]) * 20) is None  # an empty bucket
    finally:
        index.close()


def test_object_written_loose_in_a_new_directory_after_a_read_is_found(
        history: Path, tmp_path: Path) -> None:
    """A read lists objects/XX once to skip opening loose files that cannot be there;
    an object another writer adds loose afterwards, under an XX not listed, is found."""
    store = Store(str(tmp_path / "store"))
    other = Store(str(tmp_path / "store"))
    try:
        [base] = repack(history)
        dest = os.path.join(store.root, "objects", "pack", os.path.basename(base))
        for ext in (".pack", ".idx"):
            os.link(base + ext, dest + ext)
        first = next(iter(all_objects(history)))
        assert store.read_raw(first)[0] in TYPES.values()  # objects/ listed now
        listed = set(os.listdir(os.path.join(store.root, "objects")))
        n = 0
        while True:  # content whose id falls under a directory the listing lacked
            data = b"written later %d\n" % n
            sha = other.add_object(3, data)
            if sha.hex()[:2] not in listed:
                break
            n += 1
        assert store.read_raw(sha) == (3, data)
        assert store.read_blob(other.add_object(3, data + b"again")) == data + b"again"
    finally:
        other.close()
        store.close()


def test_read_head_reads_small_packed_blobs_whole_and_big_ones_in_pieces(
        history: Path, tmp_path: Path) -> None:
    """read_head inflates a blob packed whole and within the limit from the pack's map;
    a bigger one, a delta and a loose one go through the piecewise reader, and a
    damaged pack is damage either way."""
    expected = all_objects(history)
    [base] = repack(history)
    listing = git(history, "verify-pack", "-v", base + ".idx").decode().splitlines()
    deltas = {bytes.fromhex(line.split()[0]) for line in listing if len(line.split()) == 7}
    blobs = {sha: body for sha, (kind, body) in expected.items() if kind == TYPES["blob"]}
    assert deltas & set(blobs) and set(blobs) - deltas, "want whole and delta blobs"
    store = Store(str(tmp_path / "store"))
    try:
        dest = os.path.join(store.root, "objects", "pack", os.path.basename(base))
        for ext in (".pack", ".idx"):
            os.link(base + ext, dest + ext)
        loose = store.add_object(3, b"loose blob\n")
        for sha, body in [*blobs.items(), (loose, b"loose blob\n")]:
            for limit in (0, 1, 100, len(body) - 1, len(body), len(body) + 1, 1 << 20):
                assert read_head(store, sha, max(limit, 0)) == body[:max(limit, 0)], (
                    sha.hex(), limit, sha in deltas)
    finally:
        store.close()
    damaged = tmp_path / "damaged"
    store = Store(str(damaged))
    try:
        dest = os.path.join(store.root, "objects", "pack", os.path.basename(base))
        data = bytearray(Path(base + ".pack").read_bytes())
        data[40:-20] = bytes(len(data) - 60)  # every object's zlib stream is zeros
        Path(dest + ".pack").write_bytes(data)
        os.link(base + ".idx", dest + ".idx")
        whole = next(sha for sha in blobs if sha not in deltas)
        with pytest.raises(Corrupt, match="damaged"):
            read_head(store, whole, 1 << 20)
    finally:
        store.close()


def test_apply_delta_refuses_a_delta_for_another_base() -> None:
    delta = bytes([3, 2, 0x91, 0, 2])  # base 3 bytes, result 2: copy 2 from offset 0
    assert apply_delta(b"abc", delta) == b"ab"
    with pytest.raises(ValueError):
        apply_delta(b"abcd", delta)


def test_ref_reader_agrees_with_git(history: Path) -> None:
    head = git(history, "rev-parse", "HEAD").strip()
    first = git(history, "rev-list", "--max-parents=0", "HEAD").strip()
    git(history, "update-ref", "refs/images/packed/x", first.decode())
    git(history, "update-ref", "refs/images/both", first.decode())
    git(history, "tag", "-a", "-m", "annotated", "v1", first.decode())  # a peeled line
    git(history, "pack-refs", "--all")
    assert b"\n^" in (history / ".git" / "packed-refs").read_bytes()
    git(history, "update-ref", "refs/images/both", head.decode())  # loose wins
    git(history, "update-ref", "refs/images/loose", head.decode())
    git(history, "symbolic-ref", "refs/images/sym", "refs/images/loose")
    (history / ".git" / "refs" / "images" / "x.lock").write_bytes(head + b"\n")
    reader = RefReader(str(history / ".git"))
    listed = git(history, "for-each-ref", "--format=%(refname) %(objectname)", "refs/images")
    expected = {n[len(b"refs/images/"):]: s for n, s in
                (line.split() for line in listed.splitlines())}
    assert expected[b"both"] == head and expected[b"packed/x"] == first
    assert reader.under(b"refs/images") == expected
    assert reader.get(b"HEAD") == head
    assert reader.get(b"refs/images/sym") == head
    assert reader.get(b"refs/images/none") is None
    assert reader.get(b"refs/../../HEAD") is None  # never a path outside refs/
    tags = git(history, "for-each-ref", "--format=%(refname) %(objectname)", "refs/tags")
    assert reader.under(b"refs/tags") == {b"v1": tags.split()[1]}  # the tag, not its commit


@pytest.mark.parametrize("name, ok", [
    (b"refs/images/a", True), (b"refs/images/a.b/c", True), (b"refs/x.lock", False),
    (b"refs/a..b", False), (b"refs/.a", False), (b"refs/a/", False), (b"refs//a", False),
    (b"refs/a b", False), (b"refs/a@{1}", False), (b"refs/a~1", False), (b"HEAD", False),
])
def test_ref_names_follow_git_check_ref_format(history: Path, name: bytes, ok: bool) -> None:
    proc = subprocess.run(["git", "check-ref-format", name], capture_output=True)
    assert (proc.returncode == 0) == ok  # the table itself is git's rule
    assert valid_ref_name(name) == ok


def test_commit_parser_agrees_with_git(history: Path) -> None:
    head = git(history, "rev-parse", "HEAD").strip()
    tree = git(history, "rev-parse", "HEAD^{tree}").strip()
    signed = (b"tree " + tree + b"\nparent " + head + b"\nauthor Jo <j@x> 17 +0530\n"
              b"committer C <c@x> 17 +0530\ngpgsig -----BEGIN-----\n \n abc\n -----END-----\n"
              b"\nsubject\n\nbody\n")
    sha = git(history, "hash-object", "-t", "commit", "-w", "--literally", "--stdin",
              input=signed).strip()
    for commit in (head, sha):
        raw = git(history, "cat-file", "commit", commit.decode())
        tree, parents, author, when, tz, message = _parse_commit(raw)
        fmt = git(history, "log", "-1", "--format=%T%n%P%n%an <%ae>%n%at%n%ad%n%B",
                  "--date=format:%z", commit.decode()).split(b"\n", 5)
        assert tree == fmt[0]
        assert parents == fmt[1].split()
        assert (author, when) == (fmt[2], int(fmt[3]))
        zone = int(fmt[4][1:3]) * 3600 + int(fmt[4][3:5]) * 60
        assert tz == (-zone if fmt[4][:1] == b"-" else zone)
        assert message.rstrip(b"\n") == fmt[5].rstrip(b"\n")
    with pytest.raises(ValueError):
        _parse_commit(b"tree nothex\nauthor x\n\nmsg\n")


def test_store_refs_read_as_dulwich_reads_them(tmp_path: Path) -> None:
    """Store.ref and Store.refs_under (refread) give what dulwich's refs container,
    which they replaced on the read path, gives for the same store."""
    from dulwich.refs import DiskRefsContainer

    from tests.layerhelpers import import_dir

    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "f").write_text("x\n")
    store = Store(str(tmp_path / "store"))
    try:
        for name in ("a:1", "a:2", "b/c:latest", "registry.example:5000/d:v1.2"):
            import_dir(store, tree, name)
        subprocess.run(["git", "--git-dir", store.root, "pack-refs", "--all"], check=True)
        import_dir(store, tree, "a:3")  # loose beside packed
        theirs = DiskRefsContainer(store.root).as_dict(b"refs/images")
        expected = {"refs/images/" + k.decode(): v.decode() for k, v in theirs.items()}
        assert len(expected) == 5
        assert store.refs_under("refs/images") == expected
        assert all(store.ref(name) == value for name, value in expected.items())
        assert store.ref("refs/images/none") is None
    finally:
        store.close()


def test_truncated_pack_is_refused_whole(history: Path, tmp_path: Path) -> None:
    """As git does: a pack cut short is damage even for an object in its intact part
    (its trailer no longer matches the checksum its index holds)."""
    store = Store(str(tmp_path / "store"))
    try:
        [base] = repack(history)
        dest = os.path.join(store.root, "objects", "pack", os.path.basename(base))
        data = Path(base + ".pack").read_bytes()
        Path(dest + ".pack").write_bytes(data[:len(data) * 3 // 4])
        os.link(base + ".idx", dest + ".idx")
        offsets = git(history, "show-index", input=Path(base + ".idx").read_bytes())
        first = min((int(line.split()[0]), line.split()[1]) for line in offsets.splitlines())
        with pytest.raises(Corrupt, match="damaged"):
            store.read_raw(bytes.fromhex(first[1].decode()))  # the first object: intact
    finally:
        store.close()


def test_a_ref_only_in_packed_refs_moves_by_compare_and_swap(tmp_path: Path) -> None:
    """After `git pack-refs`, a ref's current value is read from packed-refs under its
    lock: the right old value moves it, a stale one is refused, a delete removes it."""
    from layerctl.store.repo import RefChanged
    from tests.layerhelpers import import_dir

    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "f").write_text("x\n")
    store = Store(str(tmp_path / "store"))
    try:
        one = import_dir(store, tree, "a:1")
        (tree / "f").write_text("y\n")
        two = import_dir(store, tree, "a:2")
        subprocess.run(["git", "--git-dir", store.root, "pack-refs", "--all"], check=True)
        name = "refs/images/a/_tags/1"
        assert not os.path.exists(os.path.join(store.root, name))
        with pytest.raises(RefChanged):
            store.set_ref(name, two, one)
        with pytest.raises(RefChanged):
            store.set_ref(name, None, two)  # it exists, packed
        store.set_ref(name, one, two)
        assert store.ref(name) == two
        store.delete_ref("refs/images/a/_tags/2", two)
        assert store.ref("refs/images/a/_tags/2") is None
    finally:
        store.close()


@pytest.mark.parametrize("offsets", ["small", "past 2 GiB"])
def test_pack_index_written_as_git_and_dulwich_write_it(tmp_path: Path, offsets: str) -> None:
    """packs.write_index gives the bytes dulwich's writer gives (which it replaced) for
    the same entries, 8-byte offsets included, and packs.PackIndex reads them back."""
    import random
    from io import BytesIO

    from dulwich.pack import write_pack_index_v2

    from layerctl.store.packs import PackIndex, write_index

    rng = random.Random(7)
    ids = sorted({rng.randbytes(20) for _ in range(3000)} | {b"\0" * 20, b"\xff" * 20})
    step = 1 << 21 if offsets == "small" else 1 << 30
    entries = [(sha, 12 + i * step, rng.getrandbits(32)) for i, sha in enumerate(ids)]
    checksum = rng.randbytes(20)
    ours, theirs = BytesIO(), BytesIO()
    write_index(ours, entries, checksum)
    write_pack_index_v2(theirs, entries, checksum)
    assert ours.getvalue() == theirs.getvalue()
    (tmp_path / "p.idx").write_bytes(ours.getvalue())
    index = PackIndex(str(tmp_path / "p.idx"))
    try:
        assert index.count == len(entries) and index.pack_checksum == checksum
        assert all(index.offset(sha) == off for sha, off, _crc in entries[::97])
        assert index.offset(b"\x01" * 20) is None
    finally:
        index.close()


def test_a_written_pack_passes_git_verify_pack(tmp_path: Path) -> None:
    """A pack and index from PackWriter (import) are what git itself would write."""
    from tests.layerhelpers import import_dir

    tree = tmp_path / "tree"
    (tree / "d").mkdir(parents=True)
    for i in range(50):
        (tree / "d" / f"f{i}").write_bytes(os.urandom(100 + i * 37))
    store = Store(str(tmp_path / "store"))
    try:
        import_dir(store, tree, "v:1")
    finally:
        store.close()
    packs = list((tmp_path / "store" / "objects" / "pack").glob("*.idx"))
    assert packs
    for idx in packs:
        r = subprocess.run(["git", "verify-pack", "-v", str(idx)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        rebuilt = tmp_path / "rebuilt.idx"
        subprocess.run(["git", "index-pack", "-o", str(rebuilt), str(idx.with_suffix(".pack"))],
                       check=True, capture_output=True)
        assert rebuilt.read_bytes() == idx.read_bytes()
        rebuilt.unlink()

def test_records_are_kept_on_their_reader_bounded_and_only_where_it_can_hold_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """fstree.read_record keeps what it read on the reader (freed with it), starts afresh
    past its bound, and reads through a reader that cannot hold it (__slots__)."""
    from layerctl.store import fstree

    class Counting(Store):
        reads = 0

        def read_blob(self, binsha: bytes) -> bytes:
            self.reads += 1
            return super().read_blob(binsha)

    class Slotted:
        __slots__ = ("store",)

        def __init__(self, store: Store) -> None:
            self.store = store

        def read_blob(self, binsha: bytes) -> bytes:
            return self.store.read_blob(binsha)

    store = Counting(str(tmp_path / "store"))
    try:
        ids = [store.add_object(3, b". d 0755 0:0 1.%09d\n" % n) for n in range(5)]
        assert [fstree.read_record(store, i) for i in ids * 2] == [
            store.read_raw(i)[1] for i in ids * 2]
        assert store.reads == 5  # each read once
        other = Counting(str(tmp_path / "store"))
        assert fstree.read_record(other, ids[0]) == store.read_raw(ids[0])[1]
        assert other.reads == 1  # kept per reader, not across readers
        monkeypatch.setattr(fstree, "_RECORDS_KEPT", 3)
        for i in ids:
            fstree.read_record(other, i)
        assert len(other._fstree_records) <= 3
        slotted = Slotted(store)
        assert fstree.read_record(slotted, ids[1]) == store.read_raw(ids[1])[1]
        other.close()
    finally:
        store.close()
