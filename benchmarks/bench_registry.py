"""Registry benchmarks: pull and push of the Debian minbase image against podman/skopeo,
all on a local docker-registry (127.0.0.1, plain http).

Rows:
- pull: `layerctl pull` into a fresh store vs `podman pull` into fresh private
  storage (the target peer), and vs `skopeo copy docker://... oci:DIR` (the floor:
  it only copies the compressed blob, nothing is unpacked);
- pull, every layer present: `layerctl pull` again (manifest and config only) vs
  podman's pull of an image it has;
- push: `layerctl push` to a fresh registry vs `skopeo copy` from podman's
  storage to a fresh registry (both compress and upload every layer);
- push, imported: the image `layerctl import`ed from the corpus (no blob kept from a
  registry: layerctl makes its gzip blob) vs `skopeo copy oci:DIR` of the same image
  saved by `layerctl save --format oci-dir` (the floor: the blob exists, it is only sent).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

from benchmarks import corpus
from benchmarks.harness import (
    REPO_ROOT,
    Options,
    Row,
    fresh_dir,
    layerctl,
    measure_layerctl,
    run,
    timeit,
)
from benchmarks.podman import PrivatePodman

_TOOLS = ("docker-registry", "podman", "skopeo")


def _helpers():  # noqa: ANN202 - the tests' registry helpers module
    spec = importlib.util.spec_from_file_location(
        "registryhelpers", REPO_ROOT / "tests" / "registryhelpers.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _unavailable() -> str | None:
    missing = [t for t in _TOOLS if shutil.which(t) is None]
    if missing:
        return f"{', '.join(missing)} not installed"
    if os.geteuid() != 0:
        return "needs root (podman storage, overlay)"
    return None


def registry_debian(opts: Options) -> list[Row]:
    """Debian minbase (~200 MB, one layer) through a local registry: pull and push."""
    names = ["pull debian-minbase", "pull debian-minbase", "pull, every layer present",
             "push debian-minbase", "push debian-minbase, imported"]  # fmt: skip
    source, reason = corpus.debian_or_reason(_unavailable())
    if reason:
        return [Row(n, None, "-", None, reason) for n in names]
    helpers = _helpers()
    work = fresh_dir(opts.workdir / "registry")
    work.mkdir(parents=True)
    podman = PrivatePodman(work / "source-storage")  # holds the image to push
    puller = PrivatePodman(work / "pull-storage")  # emptied before each timed pull
    registries = []

    def new_registry():  # noqa: ANN202
        reg = helpers.Registry(work / f"reg{len(registries)}")
        registries.append(reg)
        return reg.start()

    try:
        # the source image: podman storage -> registry (skopeo), outside any timing
        tar = work / "debian.tar"
        run(["tar", "-C", source, "--numeric-owner", "-cf", tar, "."])
        podman("import", str(tar), "localhost/debian:bench")
        tar.unlink()
        reg = new_registry()
        image = f"{reg.host}/bench/debian:12"
        storage = podman.storage_ref + "localhost/debian:bench"
        run(["skopeo", "copy", "-q", "--dest-tls-verify=false", storage, f"docker://{image}"])
        store = work / "store"
        rows = _pull_rows(opts, puller, image, store, work)
        rows.append(_push_row(opts, podman, storage, store, image, new_registry))
        rows.append(_push_imported_row(opts, source, work, new_registry))
        return rows
    finally:
        for reg in registries:
            reg.stop()
        podman.close()
        puller.close()
        fresh_dir(work)


def _pull_rows(
    opts: Options, podman: PrivatePodman, image: str, store: Path, work: Path
) -> list[Row]:
    def new_store() -> None:
        fresh_dir(store).mkdir(parents=True)

    lc_s, note = measure_layerctl(
        lambda: layerctl(store, "pull", "-q", image), opts.repeat, new_store
    )
    podman_s = timeit(
        lambda: podman("pull", "-q", "--tls-verify=false", image), opts.repeat, podman.reset
    )
    oci = work / "oci"
    skopeo_s = timeit(
        lambda: run(["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{image}",
                     f"oci:{oci}:x"]),
        opts.repeat, lambda: fresh_dir(oci),
    )  # fmt: skip
    rows = [
        Row("pull debian-minbase", lc_s, "podman pull", podman_s, note),
        Row("pull debian-minbase", lc_s, "skopeo copy docker->oci (floor)", skopeo_s, note),
    ]
    # the store now holds the image: manifest and config only
    again_s, again_note = (None, note) if lc_s is None else measure_layerctl(
        lambda: layerctl(store, "pull", "-q", image), opts.repeat
    )  # fmt: skip
    podman("pull", "-q", "--tls-verify=false", image)
    podman_again = timeit(lambda: podman("pull", "-q", "--tls-verify=false", image), opts.repeat)
    rows.append(Row("pull, every layer present", again_s, "podman pull (present)", podman_again,
                    again_note))  # fmt: skip
    return rows


def _push_row(opts, podman, storage, store, image, new_registry) -> Row:
    targets: list[str] = []

    def fresh_target() -> None:
        targets.append(new_registry().host)

    lc_s, note = measure_layerctl(
        lambda: layerctl(store, "push", "-q", image, f"{targets[-1]}/bench/debian:12"),
        opts.repeat, fresh_target,
    )  # fmt: skip
    skopeo_s = timeit(
        lambda: run(["skopeo", "copy", "-q", "--dest-tls-verify=false", storage,
                     f"docker://{targets[-1]}/bench/debian:12"]),
        opts.repeat, fresh_target,
    )  # fmt: skip
    return Row("push debian-minbase", lc_s, "skopeo copy storage->registry", skopeo_s, note)


def _push_imported_row(opts: Options, source: Path, work: Path, new_registry) -> Row:
    store = work / "imported-store"
    fresh_dir(store).mkdir(parents=True)
    layerctl(store, "import", source, "debian:imported")
    oci = work / "imported-oci"
    layerctl(store, "save", "-q", "--format", "oci-dir", "-o", oci, "debian:imported")
    targets: list = []

    def fresh_target() -> None:  # one registry at a time: each holds a 90 MB blob
        if targets:
            targets[-1].stop()
            fresh_dir(targets[-1].dir)
        targets.append(new_registry())

    lc_s, note = measure_layerctl(
        lambda: layerctl(store, "push", "-q", "debian:imported",
                         f"{targets[-1].host}/bench/debian:imported"),
        opts.repeat, fresh_target,
    )  # fmt: skip
    skopeo_s = timeit(
        lambda: run(["skopeo", "copy", "-q", "--dest-tls-verify=false",
                     f"oci:{oci}:debian:imported",
                     f"docker://{targets[-1].host}/bench/debian:imported"]),
        opts.repeat, fresh_target,
    )  # fmt: skip
    return Row("push debian-minbase, imported", lc_s, "skopeo copy oci->registry (floor)",
               skopeo_s, note)


BENCHMARKS = [registry_debian]
