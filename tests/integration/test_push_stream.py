"""Push as a stream (issue 16): a layer's gzip blob goes to the registry while it is
being made (POST, one chunked PATCH, PUT ?digest=), with the very bytes and digests
of the serial path; a failed stream falls back to sending the spooled file, and an
error while making the blob leaves no upload begun. Debian's docker-registry on
127.0.0.1, seen through a TCP proxy that records (and can cut) requests."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from layerctl import faults
from layerctl.images import parse_name
from layerctl.oci.registry.push import push
from layerctl.oci.registry.reference import parse_reference
from layerctl.store.repo import Store
from tests.layerhelpers import commit_edit, import_dir, put_file
from tests.registryhelpers import CuttingProxy

pytestmark = pytest.mark.needs_tool("docker-registry", "skopeo")


def _noise(size: int, seed: bytes) -> bytes:
    """Incompressible, reproducible bytes: several gzip blocks, more than the queue holds."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha512(seed + counter.to_bytes(8, "little")).digest()
        counter += 1
    return bytes(out[:size])


@pytest.fixture
def big_image(tmp_path: Path, store_root: Path) -> str:
    """big:1, two layers: 24 MiB of noise with small files, then an edit adding 3 MiB."""
    src = tmp_path / "src"
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "hostname").write_text("big\n")
    (src / "data").mkdir()
    (src / "data" / "noise").write_bytes(_noise(24 << 20, b"one"))
    store = Store(str(store_root))
    try:
        import_dir(store, src, "big:1")

        def edit(editor, writer):
            put_file(editor, writer, b"data/more", _noise(3 << 20, b"two"))

        commit_edit(store, "big:1", edit, name="big:1", message="more")
    finally:
        store.close()
    return "big:1"


@pytest.fixture
def proxy(registry) -> Iterator[CuttingProxy]:
    """Records the requests going to the registry; cuts nothing until told to."""
    p = CuttingProxy(registry.port, b"\x00never\x00", 0)
    try:
        yield p
    finally:
        p.stop()


def _calls(p: CuttingProxy) -> list[str]:
    """'METHOD kind' of each registry API request (kind: uploads, blobs, manifests)."""
    out = []
    for line in p.requests:
        parts = line.split(b" ")
        if len(parts) == 3 and parts[1].startswith(b"/v2/") and parts[2].startswith(b"HTTP/"):
            path = parts[1].split(b"?", 1)[0].decode()
            kind = "uploads" if "/blobs/uploads" in path else path.split("/")[-2]
            if path == "/v2/":
                kind = "ping"
            out.append(f"{parts[0].decode()} {kind}{' digest' if b'digest=' in parts[1] else ''}")
    return out


def _layer_digests(host: str, ref: str) -> list[str]:
    raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false",
                          f"docker://{host}/{ref}"], capture_output=True, text=True, check=True)
    return [d["digest"] for d in json.loads(raw.stdout)["layers"]]


def _saved_digests(cli, tmp_path: Path, image: str) -> list[str]:
    out = tmp_path / "saved"
    cli("save", "--format", "oci-dir", "--compress", "gzip", "-o", out, image)
    index = json.loads((out / "index.json").read_text())
    digest = index["manifests"][0]["digest"].split(":", 1)[1]
    return [d["digest"] for d in
            json.loads((out / "blobs" / "sha256" / digest).read_text())["layers"]]


def test_push_streams_each_made_blob_with_the_serial_bytes(cli, big_image, proxy, tmp_path,
                                                            store_root):
    out = cli("push", big_image, f"{proxy.host}/s/big:1").stdout
    calls = _calls(proxy)
    # each layer: an upload begun, its bytes in one PATCH, finished by digest; then
    # the config (POST, PUT with its bytes) and the manifest
    assert calls[1:] == ["POST uploads", "PATCH uploads", "HEAD blobs", "PUT uploads digest"] * 2 \
        + ["HEAD blobs", "POST uploads", "PUT uploads digest", "PUT manifests"], calls
    lines = [line.split(": ", 1)[1] for line in out.splitlines()
             if ": " in line and len(line.split(": ", 1)[0]) == 12]
    assert lines == ["Preparing", "Preparing", "Pushing", "Pushed", "Pushing", "Pushed"]
    # the same blobs as the one deterministic gzip of `save`, and nothing spooled is left
    assert _layer_digests(proxy.host, "s/big:1") == _saved_digests(cli, tmp_path, big_image)
    assert not [n for n in os.listdir(store_root / "cache" / "blobs") if n.startswith(".")]
    # the remembered digests: a second push sends nothing
    proxy.requests.clear()
    again = cli("push", big_image, f"{proxy.host}/s/big:1").stdout
    assert again.count("Layer already exists") == 2
    assert not [c for c in _calls(proxy) if c.startswith(("PATCH", "POST"))]


def test_a_cut_stream_falls_back_to_the_spooled_blob(cli, big_image, registry, tmp_path):
    """The registry's answer to the PATCH is cut: the upload is dropped and the
    spooled file is sent whole (a monolithic PUT); the push succeeds, same blobs."""
    cutting = CuttingProxy(registry.port, b"PATCH ", 0)
    try:
        cli("push", big_image, f"{cutting.host}/c/big:1")
        assert cutting.cuts == 1
        calls = _calls(cutting)
        # the cut layer went as one PUT with its bytes, the other was streamed
        assert calls[1:6] == ["POST uploads", "PATCH uploads", "HEAD blobs", "DELETE uploads",
                              "POST uploads"], calls
        assert calls[6:] == ["PUT uploads digest", "POST uploads", "PATCH uploads", "HEAD blobs",
                             "PUT uploads digest", "HEAD blobs", "POST uploads",
                             "PUT uploads digest", "PUT manifests"], calls
    finally:
        cutting.stop()
    assert _layer_digests(registry.host, "c/big:1") == \
        _saved_digests(cli, tmp_path, big_image)


def test_an_error_while_making_the_blob_ends_its_upload(big_image, store_root, proxy):
    """Made but never finished: the PATCH is failed on purpose (not left hanging,
    not finished with a digest), the upload is deleted, the spool file removed, and
    the registry has no layer."""
    store = Store(str(store_root))
    ref = parse_reference(f"{proxy.host}/e/big:1")

    def boom() -> None:
        raise RuntimeError("injected after the blob was made")

    try:
        with faults.armed("push.blob-made", boom), pytest.raises(RuntimeError, match="injected"):
            push(store, parse_name(big_image), ref)
    finally:
        store.close()
    calls = _calls(proxy)
    assert "PATCH uploads" in calls and "DELETE uploads" in calls, calls
    assert "PUT uploads digest" not in calls
    assert not [n for n in os.listdir(store_root / "cache" / "blobs") if n.startswith(".")]
    tags = subprocess.run(["skopeo", "list-tags", "--tls-verify=false",
                           f"docker://{proxy.host}/e/big"], capture_output=True, text=True)
    assert tags.returncode != 0 or json.loads(tags.stdout)["Tags"] in (None, [])


def test_an_upload_that_fails_to_start_sends_the_spooled_blob(big_image, store_root, proxy,
                                                              registry, cli, tmp_path):
    """The streaming thread fails once its upload is begun (before any byte): the
    producer is not blocked by the full queue, the begun upload is deleted and each
    layer goes whole from its spool file; same blobs as save's."""
    store = Store(str(store_root))
    ref = parse_reference(f"{proxy.host}/f/big:1")
    failed = []

    def fail() -> None:
        failed.append(1)
        raise ConnectionError("injected: the upload thread fails")

    try:
        with faults.armed("push.stream-blob", fail):
            result = push(store, parse_name(big_image), ref)
    finally:
        store.close()
    assert len(failed) == 2 and result.pushed == 2
    calls = _calls(proxy)
    assert "PATCH uploads" not in calls, calls
    assert calls[1:5] == ["POST uploads", "HEAD blobs", "DELETE uploads", "POST uploads"], calls
    assert _layer_digests(registry.host, "f/big:1") == _saved_digests(cli, tmp_path, big_image)
