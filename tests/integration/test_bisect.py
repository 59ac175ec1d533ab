"""bisect: a manual good/bad session, and `bisect run` in throwaway containers (runc)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from layerctl import runtime as rt
from layerctl.containers import state as cstate
from layerctl.errors import BadInput, Conflict, LayerctlError
from layerctl.insight import bisect
from layerctl.store.fstree import lookup
from layerctl.store.layers import read_layer
from layerctl.store.repo import Store
from tests.layerhelpers import commit_edit, import_dir, put_file

CORPUS = Path(os.environ.get("LAYERCTL_CORPUS_DIR") or "/var/cache/layerctl-corpus") / (
    "debian-minbase")
FIRST_BAD = 10  # layers[10], the 11th layer, removes /etc/ok


def _mini_rootfs(dest: Path) -> None:
    """dash and its libc from the Debian corpus: enough for `sh -c 'test -f ...'`."""
    for d in ("usr/bin", "usr/lib/x86_64-linux-gnu", "usr/lib64", "etc", "proc", "dev", "sys",
              "tmp"):
        (dest / d).mkdir(parents=True, exist_ok=True)
    for link, target in (("bin", "usr/bin"), ("lib", "usr/lib"), ("lib64", "usr/lib64")):
        os.symlink(target, dest / link)
    shutil.copy(CORPUS / "usr/bin/dash", dest / "usr/bin/dash")
    os.symlink("dash", dest / "usr/bin/sh")
    shutil.copy(CORPUS / "usr/lib/x86_64-linux-gnu/libc.so.6",
                dest / "usr/lib/x86_64-linux-gnu/libc.so.6")
    shutil.copy(CORPUS / "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
                dest / "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
    os.symlink("../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
               dest / "usr/lib64/ld-linux-x86-64.so.2")
    (dest / "etc" / "ok").write_text("ok\n")


@pytest.fixture
def sixteen(store: Store, tmp_path: Path) -> list[str]:
    """A 16-layer image: the base, then 15 layers each adding a file; layer 11 also
    deletes /etc/ok."""
    src = tmp_path / "rootfs"
    if CORPUS.is_dir():
        _mini_rootfs(src)
    else:
        (src / "etc").mkdir(parents=True)
        (src / "etc" / "ok").write_text("ok\n")
    layers = [import_dir(store, src, "sixteen:1")]
    for i in range(1, 16):
        def edit(editor, writer, i=i) -> None:  # noqa: ANN001
            put_file(editor, writer, b"etc/step%d" % i, b"%d\n" % i)
            if i == FIRST_BAD:
                editor.delete(b"etc/ok")

        layers.append(commit_edit(store, layers[-1], edit, message=f"step {i}"))
    return layers


def _has_ok(store: Store, layer_id: str) -> bool:
    return lookup(store, read_layer(store, layer_id).root, b"etc/ok") is not None


def test_manual_session(store: Store, sixteen: list[str], cli) -> None:
    layers = sixteen
    outcome = bisect.start(store, layers[-1], layers[0])
    assert store.ref(bisect.BAD) == layers[-1]
    assert store.ref(f"refs/bisect/good-{layers[0]}") == layers[0]
    steps = 0
    tested = []
    while outcome.current is not None:
        steps += 1
        tested.append(outcome.current.id)
        assert store.ref(bisect.CURRENT) == outcome.current.id
        verdict = "good" if _has_ok(store, outcome.current.id) else "bad"
        outcome = bisect.mark(store, verdict)
    assert outcome.first_bad.id == layers[FIRST_BAD]
    assert steps <= 4 and len(set(tested)) == steps
    assert store.ref(bisect.CURRENT) is None
    log = bisect.read_log(store)
    assert f"layerctl bisect start {layers[-1]} {layers[0]}" in log
    assert f"# first bad layer: [{layers[FIRST_BAD]}] step {FIRST_BAD}" in log
    assert log.count("layerctl bisect ") == steps + 1
    # The CLI reads the same state.
    assert "first bad layer" in cli("bisect", "log").stdout
    with pytest.raises(Conflict):
        bisect.start(store, layers[-1], layers[0])
    bisect.reset(store)
    assert store.refs_under("refs/bisect/") == {}
    assert not os.path.exists(store.path("bisect", "log"))
    with pytest.raises(bisect.NotBisecting):
        bisect.mark(store, "good")


def test_cli_session_with_skip_and_range_errors(store: Store, sixteen: list[str], cli) -> None:
    layers = sixteen
    out = cli("bisect", "start", layers[-1][:12], layers[0][:12]).stdout
    assert "Bisecting: 14 layer(s) left" in out
    current = store.ref(bisect.CURRENT)
    # A layer outside BAD..GOOD cannot be marked.
    bad = cli("bisect", "good", layers[0], check=False)
    assert bad.returncode != 0 and "not between" in bad.stderr
    # Skipping the middle moves to a neighbour; the search still ends on the right layer.
    cli("bisect", "skip")
    assert store.ref(bisect.CURRENT) not in (None, current)
    while store.ref(bisect.CURRENT):
        verdict = "good" if _has_ok(store, store.ref(bisect.CURRENT)) else "bad"
        out = cli("bisect", verdict).stdout
    assert f"{layers[FIRST_BAD]} is the first bad layer" in out
    cli("bisect", "reset")
    bad = cli("bisect", "good", check=False)
    assert bad.returncode != 0 and "not bisecting" in bad.stderr
    with pytest.raises(BadInput):
        bisect.start(store, layers[0], layers[-1])  # GOOD is not below BAD


def test_only_skipped_layers_left(store: Store, sixteen: list[str]) -> None:
    layers = sixteen
    bisect.start(store, layers[FIRST_BAD + 1], layers[FIRST_BAD - 2])
    bisect.mark(store, "good", layers[FIRST_BAD - 1])
    outcome = bisect.mark(store, "skip", layers[FIRST_BAD])
    assert outcome.current is None and outcome.first_bad is None
    assert [la.id for la in outcome.undecided] == [layers[FIRST_BAD], layers[FIRST_BAD + 1]]


def test_exit_codes_as_git() -> None:
    assert bisect.verdict_of(0) == "good"
    assert [bisect.verdict_of(c) for c in (1, 124, 126, 127)] == ["bad"] * 4
    assert bisect.verdict_of(125) == "skip"
    assert bisect.verdict_of(128) is None and bisect.verdict_of(255) is None


def _have_runtime() -> bool:
    try:
        rt.find_runtime()
    except LayerctlError:
        return False
    return os.geteuid() == 0 and CORPUS.is_dir()


needs_runtime = pytest.mark.skipif(not _have_runtime(),
                                   reason="needs root, crun or runc and the Debian corpus")


@pytest.fixture
def clean_runtime(store: Store) -> Store:
    """Whatever bisect run leaves behind fails the test; the finally removes it anyway."""
    yield store
    leftovers = cstate.list_containers(store)
    for c in leftovers:
        rt.forget(store, c.id, force=True)
        from layerctl import containers

        containers.remove(store, c.id, force=True)
    assert not leftovers, "bisect run left containers behind"


@needs_runtime
@pytest.mark.timeout(300)
def test_bisect_run_finds_the_breaking_layer(clean_runtime: Store, sixteen: list[str],
                                             cli) -> None:
    store = clean_runtime
    layers = sixteen
    cli("bisect", "start", layers[-1], layers[0])
    result = cli("bisect", "run", "sh", "-c", "test -f /etc/ok")
    steps = [ln for ln in result.stdout.splitlines() if ln.startswith("running ")]
    assert 1 <= len(steps) <= 5
    assert f"{layers[FIRST_BAD]} is the first bad layer" in result.stdout
    assert cstate.list_containers(store) == []
    assert rt.list_containers(rt.runtime_for(store)) == []
    cli("bisect", "reset")


@needs_runtime
@pytest.mark.timeout(300)
def test_bisect_run_skip_and_abort(clean_runtime: Store, sixteen: list[str], cli) -> None:
    layers = sixteen
    cli("bisect", "start", layers[-1], layers[0])
    # 125 skips the layer under test; the rest still decide.
    first = clean_runtime.ref(bisect.CURRENT)
    k = layers.index(first)  # layer k is the only one with /etc/stepK and no /etc/stepK+1
    script = f"test -f /etc/step{k} && ! test -f /etc/step{k + 1} && exit 125; test -f /etc/ok"
    result = cli("bisect", "run", "sh", "-c", script)
    assert f"{first[:12]}: exit 125: skip" in result.stdout
    assert f"{layers[FIRST_BAD]} is the first bad layer" in result.stdout
    cli("bisect", "reset")
    # An exit code above 127 stops the run, names the code and keeps the session.
    cli("bisect", "start", layers[-1], layers[0])
    result = cli("bisect", "run", "sh", "-c", "exit 200", check=False)
    assert result.returncode != 0 and "exited 200" in result.stderr
    assert "Traceback" not in result.stderr
    assert clean_runtime.ref(bisect.CURRENT) is not None
    cli("bisect", "reset")
