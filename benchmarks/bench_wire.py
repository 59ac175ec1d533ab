"""Interchange at the speed of the wire (issue 16): medians of 5 (or --repeat) runs,
each ratio against its peer in the same run, Debian minbase (~200 MB).

Each row alternates the two commands run by run (a load that changes during the run
weighs on both alike). Rows (targets from the issue):
- pull of the one-layer image from a docker-registry on 127.0.0.1 vs
  `skopeo copy docker://... oci:DIR` (the floor: download and verify, no unpack;
  target <= 2.0x) and vs `podman pull` (target <= 0.25x);
- pull of a five-layer image of the same files, default concurrency vs
  `--max-concurrent-downloads 1` (target: the default at least 1.3x faster,
  i.e. a ratio <= 0.77);
- `save` (docker-archive) vs `podman save` (target <= 0.5x);
- `load` + `create` + `mount` vs podman's `load` + `create` + `mount` (<= 1.0x).
The images are OCI layouts made here from the corpus (tar, gzip -6), copied to
the registry by skopeo; podman runs on private storage under the work dir.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks import corpus
from benchmarks.harness import (
    REPO_ROOT,
    CommandFailed,
    Options,
    Row,
    fresh_dir,
    layerctl,
    layerctl_unavailable,
    run,
)
from benchmarks.podman import PrivatePodman

REPEAT = 5
_TOOLS = ("docker-registry", "podman", "skopeo")


def _timed(fn: Callable[[], object], setup: Callable[[], object] | None) -> float:
    if setup is not None:
        setup()
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def paired(ours: Callable[[], object], theirs: Callable[[], object], repeat: int,
           setup_ours: Callable[[], object] | None = None,
           setup_theirs: Callable[[], object] | None = None,
           ) -> tuple[float | None, float | None, str]:
    """Medians of `repeat` runs of each, alternating ours and theirs (a machine whose
    load changes during the run weighs on both alike): (ours, theirs, note)."""
    times: tuple[list[float], list[float]] = ([], [])
    try:
        for _ in range(max(1, repeat)):
            times[0].append(_timed(ours, setup_ours))
            times[1].append(_timed(theirs, setup_theirs))
    except CommandFailed as e:
        return None, None, f"failed: {e}"
    return statistics.median(times[0]), statistics.median(times[1]), ""


def _registry_helpers():  # noqa: ANN202 - the tests' registry helpers module
    spec = importlib.util.spec_from_file_location(
        "registryhelpers", REPO_ROOT / "tests" / "registryhelpers.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _blob(layout: Path, data: bytes) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def _layout(source: Path, layout: Path, layers: int) -> None:
    """An OCI layout of `source` cut into `layers` layers of about equal content size
    (files in `find` order, so a directory comes in the layer of its first entry)."""
    (layout / "blobs" / "sha256").mkdir(parents=True)
    names = run(["find", ".", "-mindepth", "1"], cwd=source).stdout.decode().splitlines()
    sizes = [os.lstat(source / n).st_size if (source / n).is_file()
             and not (source / n).is_symlink() else 0 for n in names]  # fmt: skip
    total = sum(sizes) or 1
    groups: list[list[str]] = [[] for _ in range(layers)]
    done = 0
    for name, size in zip(names, sizes, strict=True):
        groups[min(layers - 1, done * layers // total)].append(name)
        done += size
    descriptors, diff_ids = [], []
    for group in groups:
        listing = layout / "files"
        listing.write_text("\n".join(group) + "\n")
        tar = run(["tar", "-C", source, "--numeric-owner", "--no-recursion", "-cf", "-",
                   "-T", listing]).stdout  # fmt: skip
        listing.unlink()
        diff_ids.append("sha256:" + hashlib.sha256(tar).hexdigest())
        descriptors.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                            **_blob(layout, gzip.compress(tar, 6, mtime=0))})
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Cmd": ["/bin/bash"]},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   **_blob(layout, config)},
        "layers": descriptors}).encode()  # fmt: skip
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", **_blob(layout, manifest),
         "annotations": {"org.opencontainers.image.ref.name": "1"}}]}))  # fmt: skip
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')


def _unavailable() -> str | None:
    missing = [t for t in _TOOLS if shutil.which(t) is None]
    if missing:
        return f"{', '.join(missing)} not installed"
    if os.geteuid() != 0:
        return "needs root (podman storage, overlay)"
    return layerctl_unavailable()


NAMES = [
    "pull debian-minbase", "pull debian-minbase", "pull 5 layers, default concurrency",
    "save debian-minbase", "load + create + mount debian-minbase",
]  # fmt: skip


def wire_debian(opts: Options) -> list[Row]:
    """Debian minbase through a local registry and archives, medians of 5 runs."""
    source, reason = corpus.debian_or_reason(_unavailable())
    if reason:
        return [Row(n, None, "-", None, reason) for n in NAMES]
    repeat = max(opts.repeat, REPEAT) if not opts.quick else opts.repeat
    work = fresh_dir(opts.workdir / "wire")
    work.mkdir(parents=True)
    reg = _registry_helpers().Registry(work / "registry")
    podman = PrivatePodman(work / "podman")
    try:
        reg.start()
        images = {}
        for name, layers in (("debian", 1), ("debian5", 5)):
            _layout(source, work / name, layers)
            images[name] = f"{reg.host}/bench/{name}:1"
            run(["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{work / name}:1",
                 f"docker://{images[name]}"])  # fmt: skip
        rows = _pull_rows(repeat, work, podman, images)
        rows += _archive_rows(repeat, work, podman, images["debian"])
        return rows
    finally:
        reg.stop()
        podman.close()
        fresh_dir(work)


def _pull_rows(repeat: int, work: Path, podman: PrivatePodman, images: dict) -> list[Row]:
    store = work / "store"

    def new_store() -> None:
        fresh_dir(store).mkdir(parents=True)

    image = images["debian"]
    oci = work / "oci"
    lc, floor, note = paired(
        lambda: layerctl(store, "pull", "-q", image),
        lambda: run(["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{image}",
                     f"oci:{oci}:x"]),
        repeat, new_store, lambda: fresh_dir(oci),
    )  # fmt: skip
    lc2, peer, note_p = paired(
        lambda: layerctl(store, "pull", "-q", image),
        lambda: podman("pull", "-q", "--tls-verify=false", image),
        repeat, new_store, podman.reset,
    )  # fmt: skip
    five = images["debian5"]
    parallel, serial, note_5 = paired(
        lambda: layerctl(store, "pull", "-q", five),
        lambda: layerctl(store, "pull", "-q", "--max-concurrent-downloads", "1", five),
        repeat, new_store, new_store,
    )  # fmt: skip
    return [
        Row("pull debian-minbase", lc, "skopeo copy docker->oci (floor; target 2.0x)", floor,
            note),
        Row("pull debian-minbase", lc2, "podman pull (target 0.25x)", peer, note_p),
        Row("pull 5 layers, default concurrency", parallel,
            "--max-concurrent-downloads 1 (target 0.77x)", serial, note_5),
    ]


def _archive_rows(repeat: int, work: Path, podman: PrivatePodman, image: str) -> list[Row]:
    store = work / "store"
    fresh_dir(store).mkdir(parents=True)
    layerctl(store, "pull", "-q", image)
    ours, theirs = work / "layerctl.tar", work / "podman.tar"
    layerctl(store, "save", "-q", "-o", ours, image)
    podman.reset()
    podman("load", "-q", "-i", ours)

    def drop(path: Path) -> Callable[[], None]:
        return lambda: path.unlink(missing_ok=True)

    save_l, save_p, note = paired(
        lambda: layerctl(store, "save", "-q", "-o", ours, image),
        lambda: podman("save", "-q", "-o", theirs, image),
        repeat, drop(ours), drop(theirs),
    )  # fmt: skip
    rows = [Row("save debian-minbase", save_l, "podman save (target 0.5x)", save_p, note)]

    target = work / "target"
    made: list[str] = []

    def new_target() -> None:
        for name in made:  # unmounts it
            try:
                layerctl(target, "rm", "-f", name)
            except CommandFailed:
                pass
        made.clear()
        fresh_dir(target).mkdir(parents=True)

    def ours_lcm() -> None:
        made.append(f"c{len(made)}")
        layerctl(target, "load", "-q", "-i", theirs)
        layerctl(target, "create", "--name", made[-1], image)
        layerctl(target, "mount", made[-1])

    def podman_reset() -> None:
        subprocess.run([*podman.base, "rm", "-a", "-f"], capture_output=True)
        podman.reset()

    def theirs_lcm() -> None:
        podman("load", "-q", "-i", theirs)
        podman("create", "--name", "bench", image)
        podman("mount", "bench")

    load_l, load_p, note = paired(ours_lcm, theirs_lcm, repeat, new_target, podman_reset)
    new_target()
    podman_reset()
    rows.append(Row("load + create + mount debian-minbase", load_l,
                    "podman load + create + mount (target 1.0x)", load_p, note))
    return rows


BENCHMARKS = [wire_debian]
