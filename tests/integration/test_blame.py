"""blame and `log -- PATH` on an image built through layerctl: import, then a container
whose changes (made on a real overlay mount) are committed layer by layer."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path

import pytest

from layerctl import containers as C
from layerctl.containers import state as cstate
from layerctl.errors import BadInput, NotFound
from layerctl.images import chain, parse_name
from layerctl.importer import import_directory
from layerctl.insight import blame
from layerctl.store.fstree import lookup
from layerctl.store.layers import read_layer
from layerctl.store.repo import Store

pytestmark = pytest.mark.needs_root

AUTHOR = "Jane <jane@example.com>"
SETTINGS = b"srv/app/conf/settings.txt"
NOTES = b"etc/notes.txt"
CAFE = b"data/caf\xe9.bin"  # not UTF-8
GITX = b"srv/.gitx/config"  # '.git...' names are mangled in the store
GITMODULES = b"srv/.gitmodules"

# (message, shell script run in the container's merged dir)
STEPS = [
    ("add settings and notes",
     "mkdir -p srv/app/conf data && printf 'v1\\n' > srv/app/conf/settings.txt && "
     "printf 'a\\nb\\nc\\nd\\n' > etc/notes.txt && printf 'bin1\\000' > \"$CAFE\""),
    ("chmod settings; notes line 2; .gitx",
     "chmod 600 srv/app/conf/settings.txt && printf 'a\\nB\\nc\\nd\\n' > etc/notes.txt && "
     "mkdir srv/.gitx && echo cfg > srv/.gitx/config && echo mods > srv/.gitmodules"),
    ("rewrite settings; notes line 5",
     "printf 'v2 longer\\n' > srv/app/conf/settings.txt && "
     "printf 'a\\nB\\nc\\nd\\ne\\n' > etc/notes.txt && printf 'bin2\\000' > \"$CAFE\""),
    ("rm -rf conf; notes line 1",
     "rm -rf srv/app/conf && printf 'A\\nB\\nc\\nd\\ne\\n' > etc/notes.txt && "
     "echo cfg2 > srv/.gitx/config"),
    ("re-add settings", "mkdir srv/app/conf && printf 'v3\\n' > srv/app/conf/settings.txt"),
    ("unrelated", "echo other > etc/other && chmod 700 srv/.gitmodules"),
]


def _sh(cmd: str, cwd: Path) -> None:
    env = dict(os.environ, CAFE=os.fsdecode(CAFE))
    subprocess.run(cmd, shell=True, check=True, cwd=cwd, env=env)


@pytest.fixture
def built(store: Store, tmp_path: Path) -> dict:
    """The base image, one layer per STEPS entry, and container `work` on top, mounted."""
    src = tmp_path / "src"
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "hostname").write_text("base\n")
    (src / "srv" / "app").mkdir(parents=True)
    base = import_directory(store, str(src), parse_name("blamed:base"), AUTHOR, "base")
    C.create(store, "blamed:base", name="work")
    merged = Path(C.mount(store, "work"))
    layers = [base]
    try:
        for i, (message, script) in enumerate(STEPS):
            _sh(script, merged)
            tag = "blamed:latest" if i == len(STEPS) - 1 else None
            layers.append(C.commit(store, "work", message, author=AUTHOR, tag=tag).layer_id)
        yield {"layers": layers, "merged": merged}
    finally:
        C.umount(store, "work")


def _chain(store: Store, top: str) -> list:
    return chain(store, top)


def _events(hist: blame.PathHistory) -> list[tuple]:
    return [(e.change, e.step.id, e.mechanism) for e in hist.events]


def test_five_events_added_chmod_rewritten_parent_removed_readded(store: Store,
                                                                   built: dict) -> None:
    L = built["layers"]
    hist, _ = blame.path_history(store, _chain(store, L[-1]), SETTINGS)
    assert _events(hist) == [
        ("A", L[1], ""),
        ("m", L[2], ""),
        ("M", L[3], ""),
        ("D", L[4], blame.BY_PARENT),
        ("A", L[5], ""),
    ]
    assert hist.events[1].details == ["mode 0644→0600"]
    assert hist.events[3].where == b"srv/app/conf"
    assert hist.events[2].meta.size == len(b"v2 longer\n")
    assert (hist.introduced.step.id, hist.content.step.id, hist.metadata.step.id) == (
        L[5], L[5], L[5])
    assert hist.exists and hist.deleted is None
    # Before the re-add, the same path reads as deleted, by its parent's removal.
    hist4, _ = blame.path_history(store, _chain(store, L[4]), SETTINGS)
    assert not hist4.exists and hist4.deleted.step.id == L[4]
    # At L3: content from L3, metadata (the chmod) from L2, added in L1.
    hist3, _ = blame.path_history(store, _chain(store, L[3]), SETTINGS)
    assert (hist3.introduced.step.id, hist3.content.step.id, hist3.metadata.step.id) == (
        L[1], L[3], L[2])


def test_blame_cli_all_events_and_json(store: Store, built: dict, cli) -> None:
    L = built["layers"]
    out = cli("blame", "--all-events", "blamed", "--", "/" + SETTINGS.decode()).stdout
    rows = [line.split()[:2] for line in out.splitlines()[1:]]
    assert rows == [["A", L[1][:12]], ["m", L[2][:12]], ["M", L[3][:12]],
                    ["D", L[4][:12]], ["A", L[5][:12]]]
    assert "(parent removed: /srv/app/conf)" in out
    doc = json.loads(cli("blame", "--json", "blamed", SETTINGS.decode()).stdout)[0]
    assert doc["path"] == "/" + SETTINGS.decode()
    assert [e["change"] for e in doc["events"]] == ["A", "m", "M", "D", "A"]
    assert doc["events"][3]["mechanism"] == "parent removed"
    assert doc["events"][0]["author"] == AUTHOR
    assert doc["events"][0]["message"] == "add settings and notes"
    assert doc["introduced_layer"] == L[5] and doc["deleted_layer"] is None
    # The default view of the path at L3: content, metadata, added lines.
    out = cli("blame", L[3], SETTINGS.decode()).stdout.splitlines()
    assert [ln.split()[:2] for ln in out[1:]] == [
        ["content", L[3][:12]], ["metadata", L[2][:12]], ["added", L[1][:12]]]
    assert "10B  -0600 0:0" in out[1] and "(mode 0644→0600)" in out[2]


def test_line_blame_over_four_layers(store: Store, built: dict, cli) -> None:
    L = built["layers"]
    hist, _ = blame.path_history(store, _chain(store, L[-1]), NOTES)
    lines = blame.line_blame(store, hist, None)
    assert [(ln.text, ln.step.id) for ln in lines] == [
        (b"A\n", L[4]), (b"B\n", L[2]), (b"c\n", L[1]), (b"d\n", L[1]), (b"e\n", L[3])]
    out = cli("blame", "-L", "2,3", "blamed", NOTES.decode()).stdout.splitlines()
    assert [ln.split()[0] for ln in out] == [L[2][:12], L[1][:12]]
    assert out[0].endswith(" B") and out[1].endswith(" c")
    # A binary file is refused with one line, not a traceback.
    bad = cli("blame", "-L", "1,2", "blamed", os.fsdecode(b"/" + CAFE), check=False)
    assert bad.returncode != 0 and "binary" in bad.stderr and "Traceback" not in bad.stderr
    hist, _ = blame.path_history(store, _chain(store, L[-1]), CAFE)
    with pytest.raises(BadInput):
        blame.line_blame(store, hist, None)


def test_non_utf8_and_dotgit_names(store: Store, built: dict, cli) -> None:
    L = built["layers"]
    chain = _chain(store, L[-1])
    hist, _ = blame.path_history(store, chain, CAFE)
    assert _events(hist) == [("A", L[1], ""), ("M", L[3], "")]
    hist, _ = blame.path_history(store, chain, GITX)
    assert _events(hist) == [("A", L[2], ""), ("M", L[4], "")]
    hist, _ = blame.path_history(store, chain, GITMODULES)
    assert _events(hist) == [("A", L[2], ""), ("m", L[6], "")]
    assert hist.events[1].details == ["mode 0644→0700"]
    # The same through the CLI: a non-UTF-8 argument, JSON path in base64.
    doc = json.loads(cli("blame", "--json", "blamed", "--",
                         os.fsdecode(b"/" + CAFE)).stdout)[0]
    assert base64.b64decode(doc["path_base64"]) == b"/" + CAFE
    assert [e["short"] for e in doc["events"]] == [L[1][:12], L[3][:12]]
    doc = json.loads(cli("blame", "--json", "blamed", "/" + GITX.decode()).stdout)[0]
    assert doc["content_layer"] == L[4]
    # A directory lists each child's last content layer.
    out = cli("blame", "blamed", "/srv").stdout.splitlines()
    listed = {ln.split()[2]: ln.split()[0] for ln in out[1:]}
    assert listed == {".gitmodules": L[2][:12], ".gitx": L[4][:12], "app": L[5][:12]}


def test_directory_summary_bytes_per_layer(store: Store, built: dict) -> None:
    L = built["layers"]
    view = blame.dir_view(store, _chain(store, L[-1]), b"srv")
    # settings.txt (3 bytes) from L5, .gitx/config (5) from L4, .gitmodules (5) from L2.
    assert view.bytes_by_step == {L[5]: 3, L[4]: 5, L[2]: 5}
    with pytest.raises(NotFound):
        blame.dir_view(store, _chain(store, L[-1]), b"etc/notes.txt")


def test_container_pending_changes_are_uncommitted(store: Store, built: dict, cli) -> None:
    L = built["layers"]
    merged = built["merged"]
    _sh("printf 'A\\nB\\nc\\nd\\ne\\nf\\n' > etc/notes.txt && rm -rf srv/app && "
        "chmod 640 etc/hostname", merged)
    doc = json.loads(cli("blame", "--json", "work", NOTES.decode(), SETTINGS.decode(),
                         "etc/hostname").stdout)
    notes, settings, hostname = doc
    assert notes["events"][-1]["change"] == "M"
    assert notes["content_layer"] == "(uncommitted)"
    assert settings["events"][-1]["layer"] == "(uncommitted)"
    assert settings["events"][-1]["change"] == "D"
    assert settings["events"][-1]["mechanism"] == "parent removed"
    assert settings["events"][-1]["where"] == "/srv/app"
    assert hostname["events"][-1]["change"] == "m"
    assert hostname["metadata_layer"] == "(uncommitted)" and hostname["content_layer"] == L[0]
    out = cli("blame", "-L", "5,6", "work", NOTES.decode()).stdout.splitlines()
    assert [ln.split()[0] for ln in out] == [L[3][:12], "(uncommitted)"]


def test_log_path_lists_exactly_the_touching_layers(store: Store, built: dict, cli) -> None:
    L = built["layers"]

    def logged(*paths: str) -> list[str]:
        out = cli("log", "--oneline", "blamed", "--", *paths).stdout.splitlines()
        return [ln.split()[0] for ln in out]

    assert logged(SETTINGS.decode()) == [L[i][:12] for i in (5, 4, 3, 2, 1)]
    assert logged("/" + NOTES.decode()) == [L[i][:12] for i in (4, 3, 2, 1)]
    assert logged("srv/app") == [L[i][:12] for i in (5, 4, 3, 2, 1, 0)]  # made by the base
    assert logged("etc/other", os.fsdecode(CAFE)) == [L[i][:12] for i in (6, 3, 1)]
    assert logged("etc/hostname") == [L[0][:12]]
    assert logged("no/such/path") == []
    # Without `--` log still shows the whole history.
    assert len(cli("log", "--oneline", "blamed").stdout.splitlines()) == len(L)


def test_cost_follows_depth_not_image_size(store: Store, built: dict) -> None:
    """The lookup reads only the trees on the path, and stops at an unchanged one."""
    L = built["layers"]
    chain = _chain(store, L[-1])
    reads: list[bytes] = []
    original = store.read_tree

    def counting(tree_id: bytes) -> list:
        reads.append(tree_id)
        return original(tree_id)

    store.read_tree = counting
    try:
        hist, _ = blame.path_history(store, chain, b"etc/hostname")
    finally:
        del store.read_tree
    assert _events(hist) == [("A", L[0], "")]
    # Each layer changes /etc or /srv, so each reads at most the root's and /etc's
    # rootfs and meta trees (4), and nothing under /srv or /data.
    assert len(set(reads)) <= 4 * len(chain)
    srv = {lookup(store, la.root, b"srv")[1].rootfs for la in chain}
    assert not srv & set(reads)
    # L5 changed only /srv: with L4's probe at hand, the walk stops at /etc (same ids)
    # after reading L5's root trees, and reads nothing of /etc.
    before = blame.PathLookup(store).probe(chain[4].root, [b"etc", b"hostname"])
    reads.clear()
    store.read_tree = counting
    try:
        after = blame.PathLookup(store).probe(chain[5].root, [b"etc", b"hostname"], before)
    finally:
        del store.read_tree
    assert after.entry == before.entry
    assert set(reads) <= {chain[5].root.rootfs, chain[5].root.meta}


def test_missing_path_and_bad_target(store: Store, built: dict, cli) -> None:
    out = cli("blame", "blamed", "/nope").stdout
    assert "never present" in out
    bad = cli("blame", "no-such-image", "/etc", check=False)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    bad = cli("blame", "blamed", "../etc", check=False)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert read_layer(store, built["layers"][0]).parent is None


def test_deletion_mechanisms_whiteout_opaque_replaced_parent(store: Store, built: dict) -> None:
    """Each way a path can go, committed and still pending in the container."""
    merged = built["merged"]
    _sh("rm etc/other && rm -rf srv/.gitx && mkdir srv/.gitx && echo n > srv/.gitx/new && "
        "rm -rf data && echo file > data", merged)
    pend = blame.pending_of(store, cstate.resolve(store, "work"),
                            [b"etc/other", GITX, CAFE])
    chain = _chain(store, built["layers"][-1])

    def last(path: bytes, pending: blame.Pending | None, chain: list) -> tuple:
        hist, _ = blame.path_history(store, chain, path, pending)
        e = hist.events[-1]
        return e.change, e.step.id, e.mechanism, e.where

    assert last(b"etc/other", pend, chain) == ("D", "(uncommitted)", "whiteout", b"etc/other")
    assert last(GITX, pend, chain) == ("D", "(uncommitted)", "opaque directory", b"srv/.gitx")
    assert last(CAFE, pend, chain) == ("D", "(uncommitted)", blame.BY_PARENT_REPLACED, b"data")
    top = C.commit(store, "work", "delete three ways", author=AUTHOR).layer_id
    chain = _chain(store, top)
    assert last(b"etc/other", None, chain) == ("D", top, "whiteout", b"etc/other")
    assert last(GITX, None, chain) == ("D", top, "opaque directory", b"srv/.gitx")
    assert last(CAFE, None, chain) == ("D", top, blame.BY_PARENT_REPLACED, b"data")
    # The replacement itself: /data changed type.
    hist, _ = blame.path_history(store, chain, b"data")
    assert hist.events[-1].change == "T" and hist.content.step.id == top
