"""Layer blob compression: pgzip (push) and gunzip (pull)."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import subprocess

import pytest

from layerctl.compress.gunzip import GunzipChunks
from layerctl.compress.gzip import BLOCK, GzipWriter
from layerctl.errors import BadInput


def _pgzip(data: bytes, pieces: int = 7, threads: int | None = None) -> tuple[bytes, str]:
    out = io.BytesIO()
    writer = GzipWriter(out, threads=threads)
    step = max(1, len(data) // pieces)
    for i in range(0, len(data), step):
        writer.write(data[i : i + step])
    digest = writer.close()
    return out.getvalue(), digest


@pytest.mark.parametrize("size", [0, 1, 100, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 5])
def test_pgzip_round_trip_and_determinism(size):
    data = (os.urandom(size // 2) + b"abc" * (size // 6))[:size].ljust(size, b"z")
    blob, digest = _pgzip(data)
    assert gzip.decompress(blob) == data
    assert digest == "sha256:" + hashlib.sha256(blob).hexdigest()
    assert _pgzip(data, pieces=3, threads=1) == (blob, digest)  # cuts and cores don't matter
    assert blob[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x04\xff"  # mtime 0, no name


def test_pgzip_output_passes_gzip_t():
    blob, _ = _pgzip(os.urandom(BLOCK) + bytes(2 * BLOCK))
    assert subprocess.run(["gzip", "-t"], input=blob).returncode == 0


def _gunzip(chunks: list[bytes]) -> tuple[bytes, GunzipChunks]:
    g = GunzipChunks(chunks, "layer x")
    return b"".join(g), g


def test_gunzip_chunked_and_multi_member():
    data = os.urandom(300_000) + bytes(5_000_000)
    blob = gzip.compress(data[:1000]) + gzip.compress(data[1000:])
    chunks = [blob[i : i + 777] for i in range(0, len(blob), 777)]
    out, g = _gunzip(chunks)
    assert out == data
    assert g.digest == "sha256:" + hashlib.sha256(data).hexdigest()
    assert g.size == len(data) and g.read == len(blob)


@pytest.mark.parametrize(
    ("blob", "problem"),
    [
        (gzip.compress(b"x" * 100_000)[:-20], "ends before the end"),
        (gzip.compress(b"x") + b"junk", "not gzip"),
        (b"plain tar?", "not gzip"),
        (b"", "empty"),
        (gzip.compress(b"x" * 1000)[:12] + b"\xff" * 40, "corrupt gzip data"),
    ],
)
def test_gunzip_errors_are_one_line(blob, problem):
    with pytest.raises(BadInput) as e:
        _gunzip([blob])
    assert problem in str(e.value) and str(e.value).startswith("layer x: corrupt gzip data")
