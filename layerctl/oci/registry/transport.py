"""How layerctl reaches a registry host: TLS or plain http, which CA to trust, a
session that reads no unbounded answer, and one-line errors from HTTP answers.
The distribution API itself is layerctl.oci.registry.client.

Transport rules (decided here, documented in the README):
- https with certificate verification by default; a CA file comes from
  `ca_file` (--ca-file / LAYERCTL_CA_FILE) or from certs.d directories
  (LAYERCTL_CONFIG_DIR/certs.d/HOST, /etc/containers/certs.d/HOST,
  /etc/docker/certs.d/HOST: every *.crt there);
- loopback registries (localhost, 127.0.0.0/8, ::1) fall back to plain http
  when they do not speak TLS, as Docker does; a loopback registry that does
  speak TLS is still verified;
- `insecure` (--insecure) allows plain http and unverified TLS for any host;
- credentials are only sent over TLS: a plain-http registry that asks for
  them gets a clear error instead.
"""

from __future__ import annotations

import glob
import os
import tempfile
import warnings
from dataclasses import dataclass

from layerctl.errors import BadInput, LayerctlError, NotFound
from layerctl.oci.registry.auth import config_dir
from layerctl.oci.registry.reference import Reference

CHUNK = 1 << 20
MAX_MANIFEST = 4 << 20  # bytes; the distribution spec's limit for manifests (containerd's too)
ERROR_BODY = 64 << 10  # bytes of an error answer read for its message
TIMEOUT = (30, 300)  # connect, read (seconds)


class RegistryError(LayerctlError):
    """The registry refused a request or could not be reached."""


class Unauthorized(RegistryError):
    """Missing or wrong credentials."""


class Interrupted(RegistryError):
    """The connection broke in the middle of a transfer."""


@dataclass(frozen=True)
class TlsOptions:
    insecure: bool = False  # allow http and unverified https
    ca_file: str | None = None  # trust this CA bundle (PEM)


def _certs_d(domain: str) -> list[str]:
    """*.crt files for `domain` in the certs.d directories Docker and podman read."""
    dirs = [
        os.path.join(config_dir(), "certs.d", domain),
        os.path.join("/etc/containers/certs.d", domain),
        os.path.join("/etc/docker/certs.d", domain),
    ]
    for directory in dirs:
        found = sorted(glob.glob(os.path.join(directory, "*.crt")))
        if found:
            return found
    return []


def verify_setting(ref: Reference, tls: TlsOptions) -> bool | str:
    """requests' `verify`: False, True, or a CA bundle path."""
    if tls.insecure:
        return False
    explicit = tls.ca_file or os.environ.get("LAYERCTL_CA_FILE")
    if explicit:
        if not os.path.isfile(explicit):
            raise BadInput(f"CA file {explicit}: no such file")
        return explicit
    found = _certs_d(ref.domain)
    if len(found) == 1:
        return found[0]
    if found:  # requests wants one bundle: join them
        fd, path = tempfile.mkstemp(prefix="layerctl-ca-", suffix=".pem")
        with os.fdopen(fd, "wb") as out:
            for name in found:
                with open(name, "rb") as f:
                    out.write(f.read() + b"\n")
        return path
    return True


def short_reason(error: BaseException) -> str:
    """The innermost useful message of a requests/urllib3/ssl error chain."""
    text = str(error)
    for marker in (
        "certificate verify failed",
        "wrong version number",
        "Connection refused",
        "Name or service not known",
        "timed out",
        "Connection reset",
        "IncompleteRead",
        "Connection broken",
        "Connection aborted",
    ):
        if marker in text:
            return marker[0].lower() + marker[1:]
    return text.splitlines()[0][:200] if text else type(error).__name__


def bounded_session() -> object:
    """A requests session that reads no answer body past MAX_MANIFEST bytes unless the
    caller streams it (and then bounds it itself): dxf reads token answers and others
    whole, and a hostile server's answer may never end."""
    import requests

    class BoundedSession(requests.Session):
        def request(self, method: str, url: str, **kwargs: object) -> requests.Response:
            streamed = kwargs.get("stream", False)
            kwargs["stream"] = True
            response = super().request(method, url, **kwargs)
            if streamed:
                return response
            body = bytearray()
            try:
                for chunk in response.iter_content(CHUNK):
                    body += chunk
                    if len(body) > MAX_MANIFEST:
                        host = url.split("/")[2] if url.count("/") >= 2 else url
                        raise RegistryError(
                            f"{host} sent an answer larger than {MAX_MANIFEST} bytes "
                            f"to {method} {url.split('?')[0]}"
                        )
            finally:
                response.close()
            response._content = bytes(body)  # what Response.content would hold
            response._content_consumed = True
            return response

    return BoundedSession()


def probe(client: object) -> None:
    """GET /v2/ without reading its body (an endless one must not fill memory)."""
    client._base_request("get", "", stream=True).close()


def _error_detail(response: object) -> str:
    """The registry's error messages, from at most ERROR_BODY bytes of the body."""
    import json

    try:
        body = next(response.iter_content(ERROR_BODY), b"")
        data = json.loads(body)
        errors = (data.get("errors") or []) if isinstance(data, dict) else []
        return "; ".join(
            f"{e.get('code', '')}: {e.get('message', '')}".strip(": ")
            for e in errors
            if isinstance(e, dict)
        )[:500]
    except Exception:  # any body that is not a short JSON error: no detail
        return ""
    finally:
        response.close()


def http_error(error: object, host: str, what: str) -> LayerctlError:
    response = error.response
    status = response.status_code if response is not None else 0
    detail = _error_detail(response) if response is not None else ""
    subject = what or "request"
    if status == 404:
        return NotFound(f"{subject}: not found on {host}" + (f" ({detail})" if detail else ""))
    if status == 403:
        return Unauthorized(
            f"denied: {host} refused access to {subject}" + (f" ({detail})" if detail else "")
        )
    return RegistryError(
        f"{subject}: {host} answered HTTP {status}" + (f" ({detail})" if detail else "")
    )


def quiet_insecure_warnings() -> None:
    """urllib3 warns on every unverified https request; --insecure asked for it."""
    try:
        from urllib3.exceptions import InsecureRequestWarning
    except ImportError:
        return
    warnings.filterwarnings("ignore", category=InsecureRequestWarning)

