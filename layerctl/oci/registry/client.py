"""A registry client (the OCI distribution API) over python-dxf.

python-dxf does the HTTP work: sessions, the WWW-Authenticate challenge
(Basic, or Bearer through the token service), streaming blob downloads with
digest checks, and uploads. This module adds what layerctl needs around it:
picking http or https, credentials from the store in layerctl.oci.registry.auth,
manifests by media type, and one-line errors for every failure.

How the host is reached (TLS or http, which CA, bounded answers, error lines) is
in layerctl.oci.registry.transport.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from layerctl.errors import BadInput, LayerctlError, NotFound
from layerctl.oci.model import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    sha256_digest,
)
from layerctl.oci.registry.auth import Credentials, get_credentials
from layerctl.oci.registry.reference import Reference
from layerctl.oci.registry.transport import (
    CHUNK,
    MAX_MANIFEST,
    TIMEOUT,
    Interrupted,
    RegistryError,
    TlsOptions,
    Unauthorized,
    bounded_session,
    http_error,
    probe,
    short_reason,
    verify_setting,
)

# media types: oci.model's, plus Docker's schema 1 (refused, by name)
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
ACCEPT = ", ".join((OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST))

MAX_CONFIG = 8 << 20  # bytes; containerd's limit for image configs


@dataclass(frozen=True)
class Manifest:
    """A manifest or index as the registry sent it."""

    raw: bytes
    media_type: str
    digest: str

    def json(self) -> dict:
        import json

        try:
            data = json.loads(self.raw)
        except ValueError:
            raise BadInput(f"manifest {self.digest} is not JSON") from None
        if not isinstance(data, dict):
            raise BadInput(f"manifest {self.digest} is not a JSON object")
        return data


class RegistryClient:
    """One repository on one registry. Use as a context manager (one HTTP session).

    `credentials`: None looks them up in the credential stores; pass explicit
    ones for `login`.
    """

    def __init__(
        self,
        ref: Reference,
        tls: TlsOptions | None = None,
        credentials: Credentials | None = None,
    ) -> None:
        self.ref = ref
        self.tls = tls or TlsOptions()
        self._explicit = credentials
        self._credentials: Credentials | None | bool = credentials or False  # False: unknown
        self._dxf = None
        self.scheme = ""

    # -- session -----------------------------------------------------------

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._dxf is not None:
            self._dxf.__exit__(None, None, None)
            self._dxf = None

    def _lookup_credentials(self) -> Credentials | None:
        if self._credentials is False:
            self._credentials = get_credentials(self.ref.domain)
        return self._credentials or None

    def _auth(self, dxf: object, response: object) -> None:
        """dxf's 401 callback: answer the challenge with the stored credentials."""
        from dxf.exceptions import DXFAuthInsecureError

        creds = self._lookup_credentials()
        try:
            if creds:
                dxf.authenticate(creds.username, creds.password, response=response)
            else:
                dxf.authenticate(response=response)
        except DXFAuthInsecureError:
            raise Unauthorized(
                f"{self.ref.domain} asks for credentials over plain http; layerctl sends "
                "credentials only over TLS (serve the registry with TLS, see --ca-file)"
            ) from None

    def _connect(self, scheme: str, verify: bool | str) -> object:
        import dxf

        client = dxf.DXF(
            self.ref.api_host,
            self.ref.path,
            auth=self._auth,
            insecure=scheme == "http",
            tlsverify=verify,
            timeout=TIMEOUT,
        )
        # what DXF.__enter__ does, with a session that bounds what dxf reads itself
        session = bounded_session()
        session.__enter__()
        client._sessions.insert(0, session)
        session.headers["User-Agent"] = "layerctl/0.1 (python-dxf)"
        return client

    def ping(self) -> None:
        """GET /v2/ (authenticating if asked): picks the scheme; raises on any failure."""
        import requests

        if self._dxf is not None:
            return
        verify = verify_setting(self.ref, self.tls)
        fallback = self.tls.insecure or self.ref.is_loopback
        client = self._connect("https", verify)
        try:
            self._call(probe, client)
            self._dxf, self.scheme = client, "https"
            return
        except RegistryError as e:
            cause = e.__cause__
            if not (fallback and isinstance(cause, requests.exceptions.SSLError)):
                client.__exit__(None, None, None)
                raise
            tls_error = e
        client.__exit__(None, None, None)
        client = self._connect("http", verify)
        try:
            self._call(probe, client)
        except RegistryError as e:
            client.__exit__(None, None, None)
            if isinstance(e, Unauthorized):
                raise
            raise tls_error from None
        self._dxf, self.scheme = client, "http"

    @property
    def dxf(self):  # noqa: ANN201 - dxf.DXF
        if self._dxf is None:
            self.ping()
        return self._dxf

    def _call(self, fn: Callable, *args: object, what: str = "", **kwargs: object) -> object:
        """Run a dxf call, turning its exceptions into one-line RegistryErrors."""
        import requests
        from dxf.exceptions import DXFDigestMismatchError, DXFError, DXFUnauthorizedError

        host = self.ref.domain
        where = f" for {self.ref.path}" if self.ref.path else ""
        try:
            return fn(*args, **kwargs)
        except DXFUnauthorizedError:
            creds = self._lookup_credentials()
            if creds:
                raise Unauthorized(
                    f"unauthorized: {host} rejected the credentials of {creds.username!r}"
                    f"{where} (wrong password? `layerctl login {host}`)"
                ) from None
            raise Unauthorized(
                f"unauthorized: {host} needs credentials{where} (`layerctl login {host}`)"
            ) from None
        except DXFDigestMismatchError as e:
            raise RegistryError(f"{what or 'blob'}: {e}") from None
        except requests.exceptions.HTTPError as e:
            raise http_error(e, host, what) from None
        except requests.exceptions.SSLError as e:
            raise RegistryError(f"TLS error talking to {host}: {short_reason(e)}") from e
        except requests.exceptions.ConnectionError as e:
            raise RegistryError(f"cannot reach registry {host}: {short_reason(e)}") from e
        except requests.exceptions.Timeout as e:
            raise RegistryError(f"registry {host} timed out") from e
        except requests.exceptions.RequestException as e:
            raise RegistryError(f"registry {host}: {short_reason(e)}") from e
        except DXFError as e:
            raise RegistryError(f"registry {host}: {e}") from None

    # -- manifests ---------------------------------------------------------------

    def get_manifest(self, reference: str) -> Manifest:
        """The manifest or index for a tag or digest, verified against a digest
        reference and the Docker-Content-Digest header. Read while streaming, never
        more than MAX_MANIFEST bytes (an endless answer is cut there)."""
        client = self.dxf
        what = (
            f"manifest {self.ref.path}:{reference}"
            if ":" not in reference
            else (f"manifest {self.ref.path}@{reference}")
        )
        response = self._call(
            client._request,
            "get",
            "manifests/" + reference,
            what=what,
            headers={"Accept": ACCEPT},
            stream=True,
        )
        try:
            raw = b"".join(self._bounded(response, MAX_MANIFEST, what, "manifest"))
        finally:
            response.close()
        digest = sha256_digest(raw)
        if reference.startswith("sha256:") and digest != reference:
            raise RegistryError(f"{what}: registry sent content with digest {digest}")
        header = response.headers.get("Docker-Content-Digest")
        if header and header.startswith("sha256:") and header != digest:
            raise RegistryError(f"{what}: content digest {digest} != header {header}")
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        return Manifest(raw, media_type, digest)

    def _bounded(
        self, response: object, limit: int, what: str, kind: str, exact: bool = False
    ) -> Iterator[bytes]:
        """The body of a streamed `response` in chunks, at most `limit` bytes: more is
        an error the moment it arrives (the rest is never read). With `exact`, the
        body must be `limit` bytes. Works with and without Content-Length."""
        length = response.headers.get("Content-Length")
        if length is not None and length.isdigit():
            sent = int(length)
            if sent > limit or (exact and sent != limit):
                raise BadInput(_too_big(what, kind, sent, limit, exact))
        done = 0
        try:
            for chunk in response.iter_content(CHUNK):
                done += len(chunk)
                if done > limit:
                    raise BadInput(_too_big(what, kind, done, limit, exact, more=True))
                yield chunk
        except LayerctlError:
            raise
        except Exception as e:  # requests, urllib3 and socket errors mid-body
            raise Interrupted(
                f"{what}: the connection to {self.ref.domain} broke after {done}"
                f"{f' of {limit}' if exact else ''} bytes ({short_reason(e)})"
            ) from None
        if exact and done != limit:
            raise Interrupted(f"{what}: got {done} of {limit} bytes")

    def put_manifest(self, reference: str, raw: bytes, media_type: str) -> str:
        """Upload a manifest under a tag (or its digest); returns its digest."""
        self._call(
            self.dxf._request,
            "put",
            "manifests/" + reference,
            what=f"manifest {reference}",
            data=raw,
            headers={"Content-Type": media_type},
        )
        return sha256_digest(raw)

    # -- blobs -------------------------------------------------------------------

    def has_blob(self, digest: str) -> bool:
        """HEAD the blob: does the repository already have it?"""
        try:
            self._call(self.dxf._request, "head", "blobs/" + digest, what=f"blob {digest}")
        except NotFound:
            return False
        return True

    def mount_blob(self, digest: str, source_repository: str) -> bool:
        """Ask the registry to mount a blob of another of its repositories here (the
        cross-repository mount, POST blobs/uploads/?mount=&from=): True if it did."""
        response = self._call(
            self.dxf._request, "post", "blobs/uploads/", what=f"blob {digest}",
            params={"mount": digest, "from": source_repository},
        )  # fmt: skip
        if response.status_code == 201:
            return True
        location = response.headers.get("Location")  # 202: an upload began instead
        if location:
            with contextlib.suppress(RegistryError, NotFound):
                self._call(self.dxf._base_request, "delete", location, what="upload")
        return False

    def blob_chunks(self, digest: str, size: int, what: str = "") -> Iterator[bytes]:
        """The chunks of a blob whose descriptor says `size` bytes: a registry that
        sends more is stopped the moment it does, one that sends fewer or other bytes
        fails after the last chunk (digest check); chunked answers work too."""
        what = what or digest
        response = self._call(self.dxf._request, "get", "blobs/" + digest, what=what, stream=True)
        return self._checked_blob(response, digest, size, what)

    def _checked_blob(self, response: object, digest: str, size: int, what: str) -> Iterator[bytes]:
        try:
            h = hashlib.sha256()
            for chunk in self._bounded(response, size, what, "blob", exact=True):
                h.update(chunk)
                yield chunk
        finally:
            response.close()
        got = "sha256:" + h.hexdigest()
        if got != digest:
            raise RegistryError(f"{what}: the registry sent content with digest {got}")

    def read_blob(self, digest: str, size: int, limit: int, what: str = "") -> bytes:
        """A small blob (a config) in memory: at most `limit` bytes, digest-checked."""
        if size > limit:
            raise BadInput(f"{what or digest}: {size} bytes is more than the limit of {limit}")
        return b"".join(self.blob_chunks(digest, size, what))

    def push_blob(self, digest: str, chunks: Iterable[bytes] | bytes, what: str = "") -> None:
        """Upload a blob whose digest is known (a monolithic, streamed PUT)."""
        self._call(self.dxf.push_blob, data=chunks, digest=digest, check_exists=False, what=what)

    # A blob whose digest is known only once it is made (push's gzip) is streamed
    # while it is made: POST an upload, PATCH its bytes (one chunked request, the
    # "stream upload" docker push uses), PUT ?digest= when the digest is known.

    def begin_upload(self, what: str = "") -> str:
        """POST blobs/uploads/: the upload's location."""
        response = self._call(self.dxf._request, "post", "blobs/uploads/", what=what)
        return self._location(response, what)

    def patch_upload(self, location: str, chunks: Iterable[bytes], what: str = "") -> str:
        """Send `chunks` to an upload in one PATCH; the location to continue it at."""
        response = self._call(self.dxf._base_request, "patch", location, data=chunks,
                              headers={"Content-Type": "application/octet-stream"}, what=what)
        return self._location(response, what)

    def finish_upload(self, location: str, digest: str, what: str = "") -> None:
        """PUT ?digest=: the registry checks the bytes it got against `digest`."""
        sep = "&" if "?" in location else "?"
        self._call(self.dxf._base_request, "put", f"{location}{sep}digest={digest}", what=what)

    def cancel_upload(self, location: str) -> None:
        """DELETE an upload that will not be finished (best effort)."""
        with contextlib.suppress(RegistryError, NotFound):
            self._call(self.dxf._base_request, "delete", location, what="upload")

    def _location(self, response: object, what: str) -> str:
        from urllib.parse import urljoin

        location = response.headers.get("Location")
        if not location:
            raise RegistryError(f"{what or 'upload'}: registry {self.ref.domain} gave no "
                                "upload location")
        return urljoin(self.dxf._base_url, location)


def _too_big(what: str, kind: str, sent: int, limit: int, exact: bool, more: bool = False) -> str:
    shown = f"more than {limit}" if more else str(sent)
    if exact:
        return f"{what}: the registry sends {shown} bytes, the descriptor says {limit}"
    return f"{what}: the registry sends {shown} bytes, more than the limit of {limit} for a {kind}"


def check_login(server: str, credentials: Credentials, tls: TlsOptions | None = None) -> None:
    """Raise Unauthorized unless `server` accepts `credentials` (GET /v2/ with them)."""
    from layerctl.oci.registry.reference import DEFAULT_DOMAIN, registry_key

    domain = registry_key(server)
    ref = Reference(domain, "" if domain != DEFAULT_DOMAIN else "library/hello-world")
    with RegistryClient(ref, tls, credentials) as client:
        client.ping()


