"""A hostile registry: a tiny http.server on 127.0.0.1 that serves an endless manifest,
an oversized config, blobs longer than their descriptors, chunked blobs without
Content-Length and manifests whose digest does not match. Each pull fails with one
clear line and no tag (the honest chunked one succeeds), and the client never reads
an oversized answer whole: the server sees it hang up early."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import json
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from tests.registryhelpers import make_cert, tar_bytes

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
ENDLESS_CAP = 256 << 20  # the server gives up after this much, so a test cannot hang
MiB = 1 << 20


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Image:
    """One image's bytes: config, layer blob and manifest."""

    layer: bytes
    config: bytes
    manifest: bytes = b""

    def __post_init__(self) -> None:
        self.manifest = json.dumps({
            "schemaVersion": 2, "mediaType": MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": _digest(self.config), "size": len(self.config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": _digest(self.layer), "size": len(self.layer)}],
        }).encode()  # fmt: skip


def make_image(content: bytes = b"hello\n", padding: int = 0) -> Image:
    tar = tar_bytes([("f", content)])
    config = {
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [_digest(tar)]},
        "history": [{"created": "2024-01-02T03:04:05Z", "created_by": "test"}],
    }  # fmt: skip
    if padding:
        config["padding"] = "x" * padding
    return Image(gzip.compress(tar, mtime=0), json.dumps(config).encode())


@dataclass
class Sent:
    """What the server did for one answer."""

    path: str
    bytes: int = 0
    client_closed: bool = False
    finished: threading.Event = field(default_factory=threading.Event)


@dataclass
class HostileRegistry:
    routes: dict[str, Callable] = field(default_factory=dict)
    log: list[Sent] = field(default_factory=list)
    host: str = ""

    def sent(self, path: str) -> list[Sent]:
        """The answers to `path`, once the server is done writing them."""
        found = [s for s in self.log if s.path == path]
        for s in found:
            assert s.finished.wait(30), f"the server still writes {path}"
        return found

    def serve(self, repo: str, image: Image, tag: str = "1", **behaviour: Callable) -> None:
        """Routes for `image` under `repo`; `behaviour` replaces the writer of
        "manifest", "config" or "layer" (default: honest, with Content-Length)."""
        for kind, data, path in (
            ("manifest", image.manifest, f"/v2/{repo}/manifests/{tag}"),
            ("config", image.config, f"/v2/{repo}/blobs/{_digest(image.config)}"),
            ("layer", image.layer, f"/v2/{repo}/blobs/{_digest(image.layer)}"),
        ):
            writer = behaviour.get(kind, with_length)
            self.routes[path] = lambda h, s, d=data, w=writer: w(h, s, d)


def _headers(
    handler: http.server.BaseHTTPRequestHandler, length: int | None, status: int = 200
) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", MANIFEST if "/manifests/" in handler.path else
                        "application/octet-stream")  # fmt: skip
    if length is None:
        handler.send_header("Transfer-Encoding", "chunked")
    else:
        handler.send_header("Content-Length", str(length))
    handler.end_headers()


def _write(handler: http.server.BaseHTTPRequestHandler, sent: Sent, chunks: Iterator[bytes],
           chunked: bool) -> None:  # fmt: skip
    try:
        for chunk in chunks:
            if chunked:
                handler.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            else:
                handler.wfile.write(chunk)
            sent.bytes += len(chunk)
        if chunked:
            handler.wfile.write(b"0\r\n\r\n")
        handler.wfile.flush()
    except OSError:  # a broken pipe, a reset, a TLS error: the client hung up
        sent.client_closed = True
        handler.close_connection = True


def _pieces(data: bytes, size: int = 64 << 10) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def with_length(handler, sent: Sent, data: bytes) -> None:
    _headers(handler, len(data))
    _write(handler, sent, _pieces(data), chunked=False)


def chunked(handler, sent: Sent, data: bytes) -> None:
    _headers(handler, None)
    _write(handler, sent, _pieces(data), chunked=True)


def endless(handler, sent: Sent, data: bytes, status: int = 200) -> None:
    """The real bytes, then spaces (still valid JSON around a manifest) without end."""

    def forever() -> Iterator[bytes]:
        yield from _pieces(data)
        filler = b" " * (64 << 10)
        while sent.bytes < ENDLESS_CAP:
            yield filler

    _headers(handler, None, status)
    _write(handler, sent, forever(), chunked=True)


def longer(extra: int, length: bool) -> Callable:
    """The real bytes and `extra` more, announced in Content-Length or chunked."""

    def write(handler, sent: Sent, data: bytes) -> None:
        body = data + b"\0" * extra
        _headers(handler, len(body) if length else None)
        _write(handler, sent, _pieces(body), chunked=not length)

    return write


def other_content(handler, sent: Sent, data: bytes) -> None:
    with_length(handler, sent, data.replace(b'"schemaVersion": 2', b'"schemaVersion":  2'))


def not_found(handler, sent: Sent) -> None:
    body = b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}'
    handler.send_response(404)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


@pytest.fixture
def hostile():
    """The server on a free port of 127.0.0.1 (plain http); stopped in `finally`."""
    yield from _serve(None)


@pytest.fixture
def hostile_tls(tmp_path, config_dir, monkeypatch):
    """The same over https, its certificate trusted through LAYERCTL_CA_FILE."""
    cert, key = make_cert(tmp_path)
    monkeypatch.setenv("LAYERCTL_CA_FILE", str(cert))
    yield from _serve((cert, key))


def _serve(tls: tuple | None) -> Iterator[HostileRegistry]:
    registry = HostileRegistry()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 30  # a client that neither reads nor closes cannot hold a thread

        def do_GET(self) -> None:  # noqa: N802
            path = self.path.split("?")[0]
            if path == "/v2/" and path not in registry.routes:
                with_length(self, Sent(path), b"{}")
                return
            route = registry.routes.get(path, not_found)
            sent = Sent(path)
            registry.log.append(sent)
            try:
                route(self, sent)
            finally:
                sent.finished.set()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    if tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(tls[0]), str(tls[1]))
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    registry.host = f"127.0.0.1:{server.server_address[1]}"
    try:
        yield registry
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture
def config_dir(tmp_path, monkeypatch):
    """No credential files of the user's."""
    monkeypatch.setenv("LAYERCTL_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    monkeypatch.delenv("LAYERCTL_CA_FILE", raising=False)


def _refused(cli, ref: str, *words: str) -> str:
    proc = cli("pull", ref, check=False, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("layerctl: ") and proc.stderr.count("\n") == 1, proc.stderr
    for word in words:
        assert word in proc.stderr, proc.stderr
    assert cli("images", "-q").stdout == ""  # no tag
    return proc.stderr


def test_honest_image_pulls(cli, hostile, config_dir):
    hostile.serve("ok/img", make_image())
    cli("pull", f"{hostile.host}/ok/img:1")
    assert cli("show", f"{hostile.host}/ok/img:1:f").stdout == "hello\n"


def test_chunked_answers_without_content_length_pull(cli, hostile, config_dir):
    image = make_image(b"chunked\n" * 50_000)
    hostile.serve("chunked/img", image, manifest=chunked, config=chunked, layer=chunked)
    cli("pull", f"{hostile.host}/chunked/img:1")
    assert cli("show", f"{hostile.host}/chunked/img:1:f").stdout == "chunked\n" * 50_000
    cli("fsck")


def test_endless_manifest_is_cut(cli, hostile, config_dir):
    hostile.serve("endless/img", make_image(), manifest=endless)
    _refused(cli, f"{hostile.host}/endless/img:1", "manifest", "limit of 4194304")
    [sent] = hostile.sent("/v2/endless/img/manifests/1")
    assert sent.client_closed and sent.bytes < 64 * MiB  # never read whole


def test_oversized_config_is_never_downloaded(cli, hostile, config_dir):
    image = make_image(padding=9 * MiB)
    hostile.serve("bigconfig/img", image)
    _refused(cli, f"{hostile.host}/bigconfig/img:1", "image config", "limit of 8388608")
    assert hostile.sent(f"/v2/bigconfig/img/blobs/{_digest(image.config)}") == []


@pytest.mark.parametrize("length", [True, False], ids=["content-length", "chunked"])
def test_config_longer_than_its_descriptor(cli, hostile, config_dir, length):
    image = make_image()
    hostile.serve("lying/img", image, config=longer(64 * MiB, length))
    _refused(cli, f"{hostile.host}/lying/img:1", "image config",
             f"the descriptor says {len(image.config)}")  # fmt: skip
    [sent] = hostile.sent(f"/v2/lying/img/blobs/{_digest(image.config)}")
    assert sent.client_closed and sent.bytes < 32 * MiB


@pytest.mark.parametrize("length", [True, False], ids=["content-length", "chunked"])
def test_blob_longer_than_its_descriptor(cli, hostile, config_dir, length):
    image = make_image()
    hostile.serve("long/img", image, layer=longer(64 * MiB, length))
    _refused(cli, f"{hostile.host}/long/img:1", "layer",
             f"the descriptor says {len(image.layer)}")  # fmt: skip
    [sent] = hostile.sent(f"/v2/long/img/blobs/{_digest(image.layer)}")
    assert sent.client_closed and sent.bytes < 32 * MiB


def test_blob_shorter_than_its_descriptor(cli, hostile, config_dir):
    image = make_image()
    cut = image.layer[:-10]
    hostile.serve("short/img", image, layer=lambda h, s, d: chunked(h, s, cut))
    _refused(cli, f"{hostile.host}/short/img:1", "layer", f"of {len(image.layer)} bytes")


def test_blob_with_other_content(cli, hostile, config_dir):
    image = make_image()
    bad = image.layer[:4] + b"\x01" + image.layer[5:]  # another gzip mtime: same tar
    hostile.serve("swap/img", image, layer=lambda h, s, d: chunked(h, s, bad))
    _refused(cli, f"{hostile.host}/swap/img:1", "digest")


def test_manifest_digest_mismatch(cli, hostile, config_dir):
    image = make_image()
    digest = _digest(image.manifest)
    hostile.serve("dig/img", image, tag=digest, manifest=other_content)
    _refused(cli, f"{hostile.host}/dig/img@{digest}", "digest")
    # by tag: the Docker-Content-Digest header must match the content
    hostile.serve("hdr/img", image)
    route = hostile.routes["/v2/hdr/img/manifests/1"]

    def lying_header(handler, sent: Sent) -> None:
        original = handler.end_headers

        def end_headers() -> None:
            handler.send_header("Docker-Content-Digest", "sha256:" + "0" * 64)
            original()

        handler.end_headers = end_headers
        route(handler, sent)

    hostile.routes["/v2/hdr/img/manifests/1"] = lying_header
    _refused(cli, f"{hostile.host}/hdr/img:1", "digest")


def test_endless_api_root_and_error_bodies(cli, hostile, config_dir):
    """GET /v2/ and error answers are not read whole either."""
    hostile.routes["/v2/"] = lambda h, s: endless(h, s, b"{}")
    hostile.serve("ok/img", make_image())
    error = b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"no"}]'
    hostile.routes["/v2/ok/img/manifests/2"] = lambda h, s: endless(h, s, error, 404)
    _refused(cli, f"{hostile.host}/ok/img:2", "not found")
    for path in ("/v2/", "/v2/ok/img/manifests/2"):
        assert hostile.sent(path), path
        assert all(s.client_closed and s.bytes < 64 * MiB for s in hostile.sent(path)), path
    hostile.routes["/v2/ok/img/manifests/3"] = lambda h, s: endless(h, s, error, 500)
    _refused(cli, f"{hostile.host}/ok/img:3", "HTTP 500")
    [sent] = hostile.sent("/v2/ok/img/manifests/3")
    assert sent.client_closed and sent.bytes < 64 * MiB


def test_endless_token_answer(cli, hostile_tls):
    """The token service a registry names is as untrusted as the registry: its
    answer is read at most 4 MiB too (python-dxf itself would read it whole)."""
    realm = f'Bearer realm="https://{hostile_tls.host}/token",service="hostile"'

    def challenge(handler, sent: Sent) -> None:
        handler.send_response(401)
        handler.send_header("WWW-Authenticate", realm)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    hostile_tls.routes["/v2/"] = challenge
    hostile_tls.routes["/token"] = lambda h, s: endless(h, s, b'{"token": "')
    _refused(cli, f"{hostile_tls.host}/tok/img:1", "larger than 4194304")
    [sent] = hostile_tls.sent("/token")
    assert sent.client_closed and sent.bytes < 64 * MiB
