"""What `waste` keeps in the store's cache (waste.analyze per top layer, owners.row_owners
per layer): a second run walks no tree and says exactly what a fresh one says, and a
kept answer is never used where it could be wrong (another top, a container's pending
changes, another base, a changed layerctl, a malformed file, a database that warned).
"""

from __future__ import annotations

import marshal
import os
from pathlib import Path

import pytest

from layerctl.insight import owners as owner_cache
from layerctl.insight import waste
from layerctl.insight.history import resolve_target
from layerctl.store import cache
from layerctl.store.repo import Store
from tests.layerhelpers import commit_edit, import_dir, put_file

STATUS = (b"Package: foo\nStatus: install ok installed\nVersion: 1.0\nArchitecture: all\n\n"
          b"Package: bar\nStatus: install ok installed\nVersion: 2.0\nArchitecture: all\n\n")
FOO_LIST = b"/.\n/usr\n/usr/share\n/usr/share/foo\n/usr/share/foo/data\n"


class CountingStore(Store):
    """A real store that counts the trees it reads (resolving the target reads each
    layer's small top tree: the analysis is counted after it)."""

    trees = 0

    def read_tree(self, binsha: bytes) -> list[tuple[bytes, bytes, bytes]]:
        self.trees += 1
        return super().read_tree(binsha)


@pytest.fixture
def images(store: Store, tmp_path: Path) -> Store:
    """c:base (dpkg db: foo owns usr/share/foo/data, 5000 bytes) -> c:one (data rewritten,
    3000) -> c:two (rm -rf usr/share/foo: a walk of the parent's subtree; etc/x added);
    c:other forks from c:one."""
    src = tmp_path / "src"
    (src / "usr/share/foo").mkdir(parents=True)
    (src / "usr/share/foo/data").write_bytes(b"d" * 5000)
    (src / "var/lib/dpkg/info").mkdir(parents=True)
    (src / "etc").mkdir()
    (src / "etc/hl1").write_bytes(b"h" * 700)
    os.link(src / "etc/hl1", src / "etc/hl2")  # a hardlink group ships once
    os.symlink("hl1", src / "etc/sl")  # a symlink ships no content
    (src / "var/lib/dpkg/status").write_bytes(STATUS)
    (src / "var/lib/dpkg/info/foo.list").write_bytes(FOO_LIST)
    import_dir(store, src, "c:base")
    commit_edit(store, "c:base", lambda e, w: put_file(e, w, b"usr/share/foo/data", b"e" * 3000),
                "c:one", "rewrite data")
    commit_edit(store, "c:one", lambda e, w: (e.delete(b"usr/share/foo"),
                                              put_file(e, w, b"etc/x", b"x" * 10)),
                "c:two", "drop data")
    commit_edit(store, "c:one", lambda e, w: put_file(e, w, b"etc/y", b"y" * 7), "c:other",
                "fork")
    return store


def _figures(report: waste.Report) -> tuple:
    return (report.total, report.visible, report.reclaimable, report.user_bytes,
            report.user_reclaimable, report.base_index, report.base_name,
            [(f.index, f.id, f.label, f.summary, f.shipped) for f in report.layers],
            sorted((w.path, w.size, w.step, w.cls, w.culprit, w.how, w.under)
                   for w in report.wasted),
            [(r.path, r.count, r.wasted, r.cls, r.culprit, r.files)
             for r in report.by_path(collapse=True)])


def _analyze(store: Store, ref: str, base: str | None = None) -> waste.Report:
    tgt = resolve_target(store, ref)
    index, name = waste.base_of(store, tgt, base)
    if isinstance(store, CountingStore):
        store.trees = 0
    return waste.analyze(store, tgt, index, name)


def _fresh(store: Store, ref: str, base: str | None = None) -> waste.Report:
    """The analysis computed with nothing kept."""
    tgt = resolve_target(store, ref)
    index, name = waste.base_of(store, tgt, base)
    return waste._analyze(store, tgt, index, name, False)


def test_second_run_walks_no_tree_and_says_the_same(images):
    first = CountingStore(images.root)
    a = _analyze(first, "c:two")
    assert first.trees > 0
    assert a.reclaimable == 8000  # 5000 (base copy) + 3000 (rewrite), both gone
    again = CountingStore(images.root)
    b = _analyze(again, "c:two")
    assert again.trees == 0
    assert _figures(b) == _figures(a) == _figures(_fresh(images, "c:two"))
    first.close()
    again.close()


def test_kept_analysis_is_per_top_layer(images):
    two = _analyze(images, "c:two")
    other = _analyze(images, "c:other")  # shares c:base and c:one with c:two
    assert _figures(other) == _figures(_fresh(images, "c:other"))
    assert other.reclaimable == 5000 and two.reclaimable == 8000
    assert _figures(_analyze(images, "c:one")) == _figures(_fresh(images, "c:one"))
    assert len(os.listdir(images.path("cache", waste.ANALYSIS))) == 3


def test_base_is_applied_to_the_kept_analysis(images):
    _analyze(images, "c:two")
    for base in ("c:base", "c:one", "c:two"):
        assert _figures(_analyze(images, "c:two", base)) == _figures(
            _fresh(images, "c:two", base))
    assert _analyze(images, "c:two", "c:one").user_reclaimable == 3000  # the delete's only


@pytest.mark.parametrize("kept", [b"", b"\x00garbage", marshal.dumps((1, ("short",))),
                                  marshal.dumps((1, ([("x",)], 1, 2, [], {}, []))),
                                  marshal.dumps((1, ([], "1", 2, [], {}, [])))],
                         ids=["empty", "garbage", "short", "bad layer", "bad total"])
def test_a_malformed_kept_analysis_is_recomputed(images, kept):
    _analyze(images, "c:two")
    (name,) = os.listdir(images.path("cache", waste.ANALYSIS))
    Path(images.path("cache", waste.ANALYSIS, name)).write_bytes(kept)
    assert _figures(_analyze(images, "c:two")) == _figures(_fresh(images, "c:two"))


def test_a_changed_layerctl_does_not_read_an_older_analysis(images):
    """The key carries the code stamp of the modules that compute the analysis."""
    _analyze(images, "c:two")
    source = Path(waste.__file__)
    st = source.stat()
    before = cache.code_stamp("layerctl.insight.waste")
    try:
        os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
        assert cache.code_stamp("layerctl.insight.waste") != before
        assert waste._analysis_key(resolve_target(images, "c:two")) is not None
        _analyze(images, "c:two")
        kept = os.listdir(images.path("cache", waste.ANALYSIS))
        assert kept == [waste._analysis_key(resolve_target(images, "c:two"))]  # the old
        # layerctl's file is gone: nothing would read it any more
    finally:
        os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert cache.code_stamp("layerctl.insight.waste") == before
    assert cache.code_stamp("layerctl.no_such_module") != cache.code_stamp("layerctl.insight.waste")


def test_a_containers_pending_changes_are_never_kept(images, cli):
    cli("create", "--driver", "vfs", "--name", "pc", "c:two")
    root = Path(cli("mount", "pc").stdout.strip())
    (root / "etc" / "x").write_bytes(b"1" * 100)  # the pending copy wastes c:two's 10 bytes
    assert _analyze(images, "pc").reclaimable == 8010
    (root / "var/lib/dpkg/status").unlink()  # and now the base's status file too
    second = _analyze(images, "pc")
    assert second.reclaimable == 8010 + len(STATUS)
    assert _figures(second) == _figures(_fresh(images, "pc"))
    assert not os.path.exists(images.path("cache", waste.ANALYSIS))


def _rows(store: Store, ref: str) -> tuple[dict, list[str]]:
    tgt = resolve_target(store, ref)
    rows = _analyze(store, ref).by_path(collapse=True)
    if isinstance(store, CountingStore):
        store.trees = 0
    return owner_cache.row_owners(store, tgt, rows)


def test_package_owners_are_kept_per_layer_and_read_back(images):
    owners, warnings = _rows(images, "c:two")
    assert warnings == []
    assert {p: o.label for p, o in owners.items()} == {b"usr/share/foo/data": "foo 1.0"}
    kept = os.listdir(images.path("cache", owner_cache.OWNERS))
    assert kept  # the layers asked, each with what it answered
    counting = CountingStore(images.root)
    again, warnings = _rows(counting, "c:two")
    assert counting.trees == 0 and warnings == []
    assert again == owners
    counting.close()


def test_owners_are_not_kept_once_a_database_warned_and_it_warns_every_run(images):
    commit_edit(images, "c:two", lambda e, w: (
        put_file(e, w, b"var/lib/dpkg/status", b"not a field line\n"),
        put_file(e, w, b"etc/x", b"z" * 20)), "c:bad", "break the db")
    commit_edit(images, "c:bad", lambda e, w: e.delete(b"etc/x"), "c:top", "drop x")
    for _ in range(2):
        owners, warnings = _rows(images, "c:top")
        assert {p: o.label for p, o in owners.items()} == {b"usr/share/foo/data": "foo 1.0"}
        assert len(warnings) == 1 and "unreadable package database" in warnings[0]
    bad = resolve_target(images, "c:bad").layers[-1].id
    assert not any(n.startswith(bad) for n in os.listdir(images.path("cache", owner_cache.OWNERS)))


def test_a_base_layers_size_from_its_records_equals_its_diff(images):
    """images.layer_sizes sums a parentless layer from its metadata records alone (what
    waste takes as layer 0's shipped bytes): the same figure a full diff gives."""
    from layerctl.images import layer_sizes, tree_bytes
    from layerctl.store.diff import diff
    from layerctl.store.meta import FILE

    base = resolve_target(images, "c:base").layers[0]
    by_diff = sum(ch.new.size for ch in diff(images, None, base.root)
                  if ch.new is not None and ch.new.kind == FILE and ch.new.link is None)
    assert by_diff == 5000 + len(STATUS) + len(FOO_LIST) + 700
    assert tree_bytes(images, base.root) == by_diff == layer_sizes(images, [base])[0]
    assert _analyze(images, "c:two").layers[0].shipped == by_diff
