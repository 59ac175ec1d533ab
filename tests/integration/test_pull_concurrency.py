"""Concurrent layer downloads of `layerctl pull` against Debian's docker-registry on
127.0.0.1: apply order when a later layer arrives first, a bad blob among
concurrent downloads, the bound on concurrent downloads, and the option's errors.

The in-process pulls act between two steps with fault points (layerctl.faults):
the first layer's stream is held until a later layer's download has ended."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path

import pytest

from layerctl import faults
from layerctl.errors import BadInput, LayerctlError
from layerctl.images import ImageName, chain, image_layer
from layerctl.oci.registry.pull import pull
from layerctl.oci.registry.reference import parse_reference
from layerctl.store.repo import Store
from tests.registryhelpers import Registry, tar_bytes, write_layout

pytestmark = pytest.mark.needs_tool("docker-registry", "skopeo")

HOLD = 30  # seconds a held stream waits at most (a hang would be the bug)

LAYERS = [
    tar_bytes([("etc", None), ("etc/f", b"zero\n"), ("etc/gone", b"soon deleted\n")]),
    tar_bytes([("etc/f", b"one\n"), ("etc/.wh.gone", b""), ("bin", None),
               ("bin/tool", b"#!/bin/sh\n" * 1000, 0o755)]),
    tar_bytes([("etc/f", b"two\n"), ("data", None), ("data/blob", os.urandom(256 << 10))]),
]  # fmt: skip


@pytest.fixture
def store(store_root):
    s = Store(str(store_root))
    try:
        yield s
    finally:
        s.close()


def _push(registry: Registry, tmp_path: Path, name: str, layers: list[bytes]) -> list[str]:
    """Push an image of `layers`; returns its layer blob digests."""
    layout = tmp_path / name.replace("/", "-")
    write_layout(layout, [{"layers": layers}])
    subprocess.run(["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{layout}:1",
                    f"docker://{registry.host}/{name}:1"], check=True)  # fmt: skip
    index = json.loads((layout / "index.json").read_text())
    digest = index["manifests"][0]["digest"].split(":", 1)[1]
    manifest = json.loads((layout / "blobs" / "sha256" / digest).read_text())
    return [d["digest"] for d in manifest["layers"]]


def _short(digest: str) -> str:
    return digest.split(":", 1)[1][:12]


def _stored_blob(registry: Registry, digest: str) -> Path:
    hexd = digest.split(":", 1)[1]
    return registry.dir / "data/docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"


def _leftovers(store_root: Path) -> list[str]:
    """Anything in objects/pack that is not a landed pack (spool files, temp packs)."""
    pack = store_root / "objects" / "pack"
    return sorted(n for n in os.listdir(pack) if not n.startswith("pack-"))


class Hold:
    """Holds the first layer's stream until the downloads of `until` (short digests)
    have ended, and records the order in which downloads end."""

    def __init__(self, *until: str) -> None:
        self.until = set(until)
        self.ended: list[str] = []
        self.released = threading.Event()
        self.timed_out = False

    def stream(self) -> None:
        if not self.released.wait(HOLD):
            self.timed_out = True
        self.ended.append("stream")

    def download_ended(self) -> None:
        name = threading.current_thread().name.removeprefix("download ")
        self.ended.append(name)
        if self.until <= set(self.ended):
            self.released.set()

    def __enter__(self) -> Hold:
        self._a = faults.armed("pull.stream-blob", self.stream)
        self._b = faults.armed("pull.download-ended", self.download_ended)
        self._a.__enter__()
        self._b.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._b.__exit__(*exc)
        self._a.__exit__(*exc)


def test_layers_apply_in_order_when_a_later_one_downloads_first(
    registry, store, store_root, tmp_path, cli
):
    blobs = _push(registry, tmp_path, "order/img", LAYERS)
    ref = parse_reference(f"{registry.host}/order/img:1")
    events = []
    with Hold(*(_short(b) for b in blobs[1:])) as hold:
        result = pull(store, ref, progress=events.append, max_downloads=3)
    assert not hold.timed_out
    # both later layers were on disk before the first one had even started to arrive
    assert hold.ended[-1] == "stream"
    assert sorted(hold.ended[:2]) == sorted(_short(b) for b in blobs[1:])
    # ... and still the layers were applied and landed base first
    done = [e.id for e in events if e.status == "Pull complete"]
    assert done == [_short(b) for b in blobs]
    layers = chain(store, result.layer_id)
    assert [la.source_diff_id or la.diff_id for la in layers] == [
        "sha256:" + __import__("hashlib").sha256(t).hexdigest() for t in LAYERS
    ]
    assert image_layer(store, ImageName(ref.familiar_name, "1")) == result.layer_id
    assert _leftovers(store_root) == []
    co = tmp_path / "co"
    cli("checkout", str(ref), co)
    assert (co / "etc" / "f").read_text() == "two\n"  # the last layer's, not an earlier one's
    assert not (co / "etc" / "gone").exists()  # layer 1's whiteout applied after layer 0
    assert (co / "bin" / "tool").stat().st_mode & 0o777 == 0o755
    cli("fsck")


@pytest.mark.parametrize("fault", ["tampered", "missing"])
def test_bad_blob_among_concurrent_downloads_leaves_no_tag_and_no_layer(
    registry, store, store_root, tmp_path, cli, fault
):
    blobs = _push(registry, tmp_path, "bad/img", LAYERS)
    stored = _stored_blob(registry, blobs[1])
    if fault == "tampered":  # same size, other bytes: only the digest tells
        data = bytearray(stored.read_bytes())
        data[len(data) // 2] ^= 0xFF
        stored.write_bytes(bytes(data))
    else:
        stored.unlink()
    ref = parse_reference(f"{registry.host}/bad/img:1")
    # the bad layer's download has failed while the first layer is still arriving
    with Hold(_short(blobs[1])) as hold, pytest.raises(LayerctlError) as failed:
        pull(store, ref, max_downloads=3)
    assert not hold.timed_out
    assert hold.ended.index(_short(blobs[1])) < hold.ended.index("stream")
    message = str(failed.value)
    assert "\n" not in message and _short(blobs[1]) in message
    if fault == "tampered":
        assert "digest" in message
    assert image_layer(store, ImageName(ref.familiar_name, "1")) is None  # no tag
    # the first layer is kept for a retry; nothing of the bad one or the one above it
    store.landed()
    kept = list(store.refs_under("refs/pull/").values())
    assert len(kept) == 1
    [base] = chain(store, kept[0])
    assert (base.source_diff_id or base.diff_id) == (
        "sha256:" + __import__("hashlib").sha256(LAYERS[0]).hexdigest()
    )
    assert _leftovers(store_root) == []
    assert cli("images", "-q").stdout == ""
    cli("fsck")
    # the CLI says it in one line, without a traceback
    out = cli("pull", str(ref), check=False)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.startswith("layerctl: ") and out.stderr.count("\n") == 1


@pytest.mark.parametrize("limit", [1, 2])
def test_at_most_n_downloads_at_once(registry, store, tmp_path, limit):
    layers = [tar_bytes([(f"f{i}", os.urandom(64 << 10))]) for i in range(5)]
    _push(registry, tmp_path, "many/img", layers)
    lock = threading.Condition()
    running = [0]
    most = [0]

    def started() -> None:
        # Each transfer waits (bounded) until `limit` run at once: 64 kB layers from a
        # local registry can otherwise each end before the next starts on a loaded
        # machine, and `limit` is never seen although it is allowed.
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
            lock.notify_all()
            lock.wait_for(lambda: most[0] >= limit, timeout=HOLD)

    def ended() -> None:
        with lock:
            running[0] -= 1

    ref = parse_reference(f"{registry.host}/many/img:1")
    # the first layer is streamed: it counts as a download until its last chunk
    with faults.armed("pull.stream-blob", started), faults.armed("pull.stream-ended", ended), \
            faults.armed("pull.download-blob", started), \
            faults.armed("pull.download-ended", ended):  # fmt: skip
        result = pull(store, ref, max_downloads=limit)
    assert result.downloaded == 5
    assert running[0] == 0
    assert most[0] == limit  # used, and never more


@pytest.mark.parametrize("value", ["0", "-1"])
def test_max_concurrent_downloads_must_be_positive(cli, registry, tmp_path, value):
    _push(registry, tmp_path, "opt/img", LAYERS[:1])
    out = cli("pull", "--max-concurrent-downloads", value, f"{registry.host}/opt/img:1",
              check=False)  # fmt: skip
    assert out.returncode == 1
    assert out.stderr == f"layerctl: --max-concurrent-downloads must be 1 or more, not {value}\n"
    assert cli("images", "-q").stdout == ""
    with pytest.raises(BadInput):
        pull(Store(os.environ["LAYERCTL_ROOT"]), parse_reference(f"{registry.host}/opt/img:1"),
             max_downloads=int(value))  # fmt: skip


def test_killed_pull_leaves_spool_files_that_the_retry_removes(registry, store_root, tmp_path,
                                                               cli):
    """A pull killed while later layers sit downloaded in spool files: the retry resumes
    from the landed layers and removes the dead process's spool files."""
    blobs = _push(registry, tmp_path, "kill/img", LAYERS)
    ref = f"{registry.host}/kill/img:1"
    # killed as the second layer is about to be applied: the first has landed (its pack
    # fsynced) while the downloads ahead, started before it, had their files made
    killed = cli("pull", ref, check=False, env={"LAYERCTL_CRASH_AT": "pull.apply-layer#2"})
    assert killed.returncode == -9
    spools = [n for n in _leftovers(store_root) if n.startswith("tmp_spool")]
    assert spools  # what a kill leaves
    retry = cli("pull", ref).stdout
    assert f"{_short(blobs[0])}: Already exists" in retry
    assert f"{_short(blobs[2])}: Pull complete" in retry
    assert _leftovers(store_root) == []
    assert cli("images", "-q").stdout.strip()
    cli("fsck")
    co = tmp_path / "co"
    cli("checkout", ref, co)
    assert (co / "etc" / "f").read_text() == "two\n"


_RATE = r"[0-9.]+[kMG]?B in [0-9]+\.[0-9]{2}s \([0-9.]+[kMG]?B/s\)"


def test_transfers_show_their_total_and_rate(registry, tmp_path, cli):
    import re

    _push(registry, tmp_path, "rate/img", LAYERS)
    ref = f"{registry.host}/rate/img:1"
    lines = cli("pull", ref).stdout.splitlines()
    assert re.fullmatch(f"Downloaded {_RATE}", lines[-4]), lines
    assert lines[-3].startswith("Digest: ")
    again = cli("pull", ref).stdout
    assert "Downloaded " not in again  # nothing was
    # a pulled image's blobs are mounted, not sent: a layer of our own is uploaded
    rootfs = tmp_path / "own"
    rootfs.mkdir()
    (rootfs / "data").write_bytes(os.urandom(1 << 20))
    cli("import", rootfs, "own:1")
    pushed = cli("push", "own:1", f"{registry.host}/rate/own:1").stdout.splitlines()
    assert re.fullmatch(f"Pushed {_RATE}", pushed[-2]), pushed
    mounted = cli("push", ref, f"{registry.host}/rate/copy:1").stdout.splitlines()
    assert not any(line.startswith("Pushed ") for line in mounted), mounted  # nothing sent
    archive = tmp_path / "img.tar"
    saved = cli("save", "-o", archive, ref).stderr.splitlines()
    assert re.fullmatch(f"Wrote {_RATE}", saved[-2]), saved
    loaded = cli("load", "-i", archive, env={"LAYERCTL_ROOT": str(tmp_path / "other")})
    assert re.fullmatch(f"Read {_RATE}", loaded.stderr.splitlines()[-1]), loaded.stderr


def test_failed_apply_stops_the_downloads_ahead_and_removes_their_files(
    registry, store, store_root, tmp_path, cli
):
    """The first layer is no tar at all: its apply fails while the layers above it sit
    downloaded in spool files; nothing is kept of any of them."""
    layers = [b"this is no tar archive\n" * 64, *LAYERS[1:]]
    blobs = _push(registry, tmp_path, "notar/img", layers)
    ref = parse_reference(f"{registry.host}/notar/img:1")
    spooled = []

    def look() -> None:  # once both downloads ahead ended: their files are there
        spooled.extend(n for n in _leftovers(store_root) if n.startswith("tmp_spool"))

    with Hold(*(_short(b) for b in blobs[1:])) as hold, \
            faults.armed("pull.stream-blob", lambda: (hold.stream(), look())), \
            pytest.raises(BadInput) as failed:  # fmt: skip
        pull(store, ref, max_downloads=3)
    assert not hold.timed_out
    assert len(spooled) == 2
    assert "not a tar archive" in str(failed.value) and "\n" not in str(failed.value)
    assert _short(blobs[0]) in str(failed.value)
    store.landed()
    assert store.refs_under("refs/pull/") == {}
    assert image_layer(store, ImageName(ref.familiar_name, "1")) is None
    assert _leftovers(store_root) == []
    assert not [t for t in threading.enumerate() if t.name.startswith("download ")]
    cli("fsck")
