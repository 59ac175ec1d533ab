"""A real registry for tests: Debian's docker-registry (distribution v2) on 127.0.0.1.

    reg = Registry(tmp_path, tls=True, users={"alice": "s3cret"})   # htpasswd + TLS
    reg = Registry(tmp_path, tls=True, token_users={"bob": "pw"})   # bearer tokens
    reg.start(); ...; reg.stop()

Also: make_cert (self-signed, SAN 127.0.0.1/localhost, via openssl), bcrypt
htpasswd lines, a bearer token service signing JWTs with openssl, and a TCP
proxy that cuts one blob download after N bytes (an interrupted pull).
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import os
import select
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_cert(directory: Path, name: str = "registry") -> tuple[Path, Path]:
    """A self-signed RSA certificate for 127.0.0.1 and localhost: (cert, key)."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={name}",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-addext", "basicConstraints=critical,CA:TRUE",
        ],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def bcrypt_hash(password: str) -> str:
    """A bcrypt hash for htpasswd (the registry accepts only bcrypt)."""
    try:
        import bcrypt

        return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()
    except ImportError:
        pass
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # glibc's libxcrypt does bcrypt ($2b$) on Debian

    hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=32))
    if not hashed or not hashed.startswith("$2"):
        raise RuntimeError("no bcrypt available (pip install bcrypt)")
    return hashed


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenService:
    """A bearer token service (docker/distribution token auth) over https.

    Checks Basic credentials against `users` (anonymous gets pull-only tokens when
    `anonymous_pull`), answers {"token": JWT} signed RS256 with its own key,
    the certificate in the JWT's x5c header.
    """

    def __init__(self, directory: Path, users: dict[str, str], tls_cert: Path, tls_key: Path,
                 anonymous_pull: bool = False) -> None:  # fmt: skip
        self.users = users
        self.anonymous_pull = anonymous_pull
        self.cert, self.key = make_cert(directory, "token-signer")
        der = subprocess.run(
            ["openssl", "x509", "-in", str(self.cert), "-outform", "DER"],
            check=True, capture_output=True,
        ).stdout  # fmt: skip
        self.x5c = base64.b64encode(der).decode()
        self.issued: list[dict] = []
        service = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                service._answer(self)

            def log_message(self, *args: object) -> None:
                pass

        # port 0: the kernel's free port, bound at once (no window for another to take it)
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(tls_cert), str(tls_key))
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def realm(self) -> str:
        return f"https://127.0.0.1:{self.port}/token"

    def _sign(self, claims: dict) -> str:
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        signing_input = (
            f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        )
        signature = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", str(self.key)],
            input=signing_input.encode(), check=True, capture_output=True,
        ).stdout  # fmt: skip
        return f"{signing_input}.{_b64url(signature)}"

    def _answer(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        from urllib.parse import parse_qs, urlparse

        query = parse_qs(urlparse(handler.path).query)
        user = None
        header = handler.headers.get("Authorization", "")
        if header.startswith("Basic "):
            name, _, password = base64.b64decode(header[6:]).decode().partition(":")
            if self.users.get(name) != password:
                handler.send_response(401)
                handler.send_header("Content-Type", "application/json")
                handler.end_headers()
                handler.wfile.write(b'{"details":"incorrect username or password"}')
                return
            user = name
        elif not self.anonymous_pull:
            handler.send_response(401)
            handler.end_headers()
            return
        access = []
        for scope in query.get("scope", []):
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            allowed = [a for a in actions.split(",") if user or a == "pull"]
            access.append({"type": kind, "name": name, "actions": allowed})
        now = int(time.time())
        claims = {
            "iss": "layerctl-test-issuer",
            "sub": user or "",
            "aud": query.get("service", [""])[0],
            "exp": now + 600,
            "nbf": now - 10,
            "iat": now,
            "jti": os.urandom(8).hex(),
            "access": access,
        }
        self.issued.append({"user": user, "access": access})
        body = json.dumps({"token": self._sign(claims), "expires_in": 600}).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class PortTaken(Exception):
    """The port a server was to listen on was bound by another process meanwhile."""


class Registry:
    """docker-registry serving from `directory`; `host` is 127.0.0.1:PORT."""

    def __init__(
        self,
        directory: Path,
        tls: bool = False,
        users: dict[str, str] | None = None,
        token_users: dict[str, str] | None = None,
        anonymous_pull: bool = False,
    ) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self._use_port(free_port())
        self.cert = self.key = None
        self.token: TokenService | None = None
        if tls or token_users is not None:
            self.cert, self.key = make_cert(self.dir)
        lines = [
            "version: 0.1",
            "log: {level: error, accesslog: {disabled: true}}",
            f"storage: {{filesystem: {{rootdirectory: {self.dir / 'data'}}}, "
            "delete: {enabled: true}}",
            "http:",
            "  addr: {host}",
            "  secret: layerctl-tests",
        ]
        if self.cert:
            lines.append(f"  tls: {{certificate: {self.cert}, key: {self.key}}}")
        if users is not None:
            htpasswd = self.dir / "htpasswd"
            htpasswd.write_text("".join(f"{u}:{bcrypt_hash(p)}\n" for u, p in users.items()))
            lines.append(f"auth: {{htpasswd: {{realm: layerctl-test, path: {htpasswd}}}}}")
        if token_users is not None:
            self.token = TokenService(self.dir, token_users, self.cert, self.key, anonymous_pull)
            lines.append(
                f"auth: {{token: {{realm: '{self.token.realm}', service: layerctl-test-registry, "
                f"issuer: layerctl-test-issuer, rootcertbundle: {self.token.cert}}}}}"
            )
        self._config_lines = lines
        self.config = self.dir / "config.yml"
        self.proc: subprocess.Popen | None = None
        self.log = self.dir / "registry.log"

    def _use_port(self, port: int) -> None:
        self.port = port
        self.host = f"127.0.0.1:{port}"

    @property
    def scheme(self) -> str:
        return "https" if self.cert else "http"

    def start(self, timeout: float = 60) -> Registry:
        # free_port() only names a port that was free: another process can bind it
        # before the registry does (then it exits), so a taken port means another one.
        for attempt in range(5):
            if attempt:
                self._use_port(free_port())
            try:
                return self._start(timeout)
            except PortTaken:
                continue
        raise RuntimeError(f"docker-registry found no free port: {self.log.read_text()[-2000:]}")

    def _start(self, timeout: float) -> Registry:
        text = "\n".join(self._config_lines) + "\n"
        self.config.write_text(text.replace("{host}", self.host))
        logged = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                ["docker-registry", "serve", str(self.config)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        context = ssl.create_default_context(cafile=str(self.cert)) if self.cert else None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.proc = None
                with open(self.log, "rb") as f:
                    f.seek(logged)
                    said = f.read().decode(errors="replace")
                if "address already in use" in said:
                    raise PortTaken(self.host)
                raise RuntimeError(f"docker-registry exited: {said[-2000:]}")
            try:
                urllib.request.urlopen(f"{self.scheme}://{self.host}/v2/", context=context,
                                       timeout=2)  # fmt: skip
                return self
            except urllib.error.HTTPError:
                return self  # 401: up, and asking for credentials
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"docker-registry did not answer on {self.host} in {timeout}s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self.token is not None:
            self.token.stop()
            self.token = None


class CuttingProxy:
    """A TCP proxy to `target` that, while `armed`, closes the connection after
    `limit` response bytes of a request whose first line contains `needle`."""

    def __init__(self, target_port: int, needle: bytes, limit: int) -> None:
        self.target_port = target_port
        self.needle = needle
        self.limit = limit
        self.armed = True
        self.cuts = 0
        self.requests: list[bytes] = []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.host = f"127.0.0.1:{self.port}"
        self._stop = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        budget: int | None = None
        try:
            while not self._stop:
                ready, _, _ = select.select([client, upstream], [], [], 1)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is client:
                        first = data.split(b"\r\n", 1)[0]
                        if first.split(b" ", 1)[0].isalpha():
                            self.requests.append(first)
                        if self.armed and self.needle in first:
                            budget = self.limit
                        upstream.sendall(data)
                        continue
                    if budget is not None:
                        if len(data) >= budget:
                            client.sendall(data[:budget])
                            self.cuts += 1
                            self.armed = False
                            return
                        budget -= len(data)
                    client.sendall(data)
        except OSError:
            return
        finally:
            client.close()
            upstream.close()

    def stop(self) -> None:
        self._stop = True
        self.sock.close()


# -- OCI layouts made by hand (no network, no daemon) ------------------------------------

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def tar_bytes(entries: list[tuple]) -> bytes:
    """A tar of (name, content) files, (name, None) directories and
    (name, content, mode) files with a mode; mtimes fixed."""
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            name, content = entry[0], entry[1]
            info = tarfile.TarInfo(name)
            info.mtime = 1_700_000_000
            if content is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
                continue
            info.mode = entry[2] if len(entry) > 2 else 0o644
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def _blob(layout: Path, data: bytes) -> dict:
    import hashlib

    digest = hashlib.sha256(data).hexdigest()
    path = layout / "blobs" / "sha256" / digest
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def write_layout(layout: Path, images: list[dict], tag: str = "1") -> None:
    """An OCI layout with `tag` naming one image, or an index of several.

    Each image: {"platform": ("linux", "amd64"[, variant]), "layers": [tar bytes...]}.
    """
    import gzip
    import hashlib

    layout.mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    manifests = []
    for image in images:
        plat = image.get("platform", ("linux", "amd64"))
        layers = [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
             **_blob(layout, gzip.compress(t, mtime=0))}
            for t in image["layers"]
        ]  # fmt: skip
        config = {
            "architecture": plat[1],
            "os": plat[0],
            "created": "2024-01-02T03:04:05Z",
            "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/usr/bin:/bin"]},
            "rootfs": {
                "type": "layers",
                "diff_ids": ["sha256:" + hashlib.sha256(t).hexdigest() for t in image["layers"]],
            },
            "history": [
                {"created": "2024-01-02T03:04:05Z", "created_by": f"layer {i}",
                 "author": "Layout Maker <maker@example.com>", "comment": f"layer {i}"}
                for i in range(len(image["layers"]))
            ],
        }  # fmt: skip
        if len(plat) > 2:
            config["variant"] = plat[2]
        cfg = {"mediaType": "application/vnd.oci.image.config.v1+json",
               **_blob(layout, json.dumps(config).encode())}  # fmt: skip
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg,
                    "layers": layers}  # fmt: skip
        desc = {"mediaType": OCI_MANIFEST, **_blob(layout, json.dumps(manifest).encode())}
        platform = {"os": plat[0], "architecture": plat[1]}
        if len(plat) > 2:
            platform["variant"] = plat[2]
        manifests.append({**desc, "platform": platform})
    ann = {"org.opencontainers.image.ref.name": tag}
    if len(manifests) == 1:
        top = {**manifests[0], "annotations": ann}
        top.pop("platform")
    else:
        nested = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
        top = {"mediaType": OCI_INDEX, **_blob(layout, json.dumps(nested).encode()),
               "annotations": ann}  # fmt: skip
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [top]}
    (layout / "index.json").write_text(json.dumps(index))


@contextlib.contextmanager
def serve(path: Path, **kwargs: object) -> Iterator[Registry]:
    """A Registry at `path`, started, and stopped afterwards even when the test fails."""
    reg = Registry(path, **kwargs)  # type: ignore[arg-type]
    try:
        reg.start()
        yield reg
    finally:
        reg.stop()
