"""Docker image references: `debian`, `user/app:1`, `127.0.0.1:5000/x@sha256:...`.

Normalisation follows Docker's (distribution/reference ParseNormalizedNamed):
a first path component is a registry only if it contains '.' or ':', is
`localhost`, or has uppercase letters; otherwise the registry is docker.io,
and a single-component name on docker.io lives in `library/`. The familiar
form (`debian:latest`, `user/app:1`) strips both again and is the local
image name layerctl tags.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from layerctl.errors import InvalidName

DEFAULT_DOMAIN = "docker.io"
LEGACY_DOMAINS = ("index.docker.io", "registry-1.docker.io", "registry.hub.docker.com")
DOCKER_HUB_API = "registry-1.docker.io"
OFFICIAL_NAMESPACE = "library"
DEFAULT_TAG = "latest"

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")  # ASCII only, as the grammar
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}")
_PATH = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_DOMAIN_RE = re.compile(_DOMAIN)
_HEX_ID = re.compile(r"[0-9a-f]{64}")
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")


@dataclass(frozen=True)
class Reference:
    """A fully qualified reference: registry domain, repository path, tag and/or digest."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """`docker.io/library/debian`."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_name(self) -> str:
        """`debian`, `user/app`, `127.0.0.1:5000/app`: the local repository name."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        prefix = OFFICIAL_NAMESPACE + "/"
        if self.path.startswith(prefix) and "/" not in self.path[len(prefix) :]:
            return self.path[len(prefix) :]
        return self.path

    @property
    def api_host(self) -> str:
        """The host:port the distribution API is served from."""
        return DOCKER_HUB_API if self.domain == DEFAULT_DOMAIN else self.domain

    @property
    def hostname(self) -> str:
        """The domain without its port (brackets kept for IPv6)."""
        if self.domain.startswith("["):
            return self.domain[: self.domain.index("]") + 1]
        return self.domain.rsplit(":", 1)[0]

    @property
    def is_loopback(self) -> bool:
        return self.hostname in LOOPBACK_HOSTS or self.hostname.startswith("127.")

    @property
    def api_ref(self) -> str:
        """What to ask the registry for: the digest if there is one, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    def with_tag(self, tag: str) -> Reference:
        return Reference(self.domain, self.path, tag, None)

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += ":" + self.tag
        if self.digest:
            text += "@" + self.digest
        return text

    def familiar(self) -> str:
        """`debian:latest`, `user/app@sha256:...`: the reference as Docker prints it."""
        text = self.familiar_name
        if self.tag:
            text += ":" + self.tag
        if self.digest:
            text += "@" + self.digest
        return text


def split_domain(name: str) -> tuple[str, str]:
    """(domain, path) of a repository name, with Docker's defaults applied."""
    first, slash, rest = name.partition("/")
    if not slash or (
        "." not in first and ":" not in first and first != "localhost" and first == first.lower()
    ):
        domain, path = DEFAULT_DOMAIN, name
    else:
        domain, path = first, rest
    if domain in LEGACY_DOMAINS:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = f"{OFFICIAL_NAMESPACE}/{path}"
    return domain, path


def parse_reference(text: str, default_tag: bool = True) -> Reference:
    """Parse and normalise `text`; a reference without tag or digest gets `latest`
    when `default_tag` is true."""
    if not text.isascii():
        raise InvalidName(f"invalid reference {text!r}: names and tags are ASCII only")
    if _HEX_ID.fullmatch(text):
        raise InvalidName(
            f"invalid reference {text!r}: a 64-hex image ID cannot be pulled or pushed; "
            "use a repository name"
        )
    rest, at, digest = text.partition("@")
    if at and not _DIGEST.fullmatch(digest):
        raise InvalidName(f"invalid reference {text!r}: bad digest {digest!r}")
    name, tag = rest, None
    colon = rest.rfind(":")
    if colon > rest.rfind("/"):
        name, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG.fullmatch(tag):
            raise InvalidName(f"invalid reference {text!r}: bad tag {tag!r}")
    if not name:
        raise InvalidName(f"invalid reference {text!r}: empty repository name")
    domain, path = split_domain(name)
    if domain != DEFAULT_DOMAIN and not _DOMAIN_RE.fullmatch(domain):
        raise InvalidName(f"invalid reference {text!r}: bad registry {domain!r}")
    if path != path.lower():
        raise InvalidName(f"invalid reference {text!r}: repository name must be lowercase")
    if not _PATH.fullmatch(path):
        raise InvalidName(
            f"invalid reference {text!r}: repository name components are lowercase "
            "letters and digits separated by '.', '_', '__' or '-'"
        )
    if len(domain) + 1 + len(path) > 255:
        raise InvalidName(f"invalid reference {text!r}: repository name too long")
    if tag is None and not at and default_tag:
        tag = DEFAULT_TAG
    return Reference(domain, path, tag, digest or None)


def registry_key(server: str) -> str:
    """The credential-store key of a registry: `https://index.docker.io/v1/` and
    `registry-1.docker.io` are docker.io, and scheme and path are dropped."""
    host = re.sub(r"^[a-z]+://", "", server.strip()).split("/", 1)[0]
    host = host.lower() if not host.startswith("[") else host
    return DEFAULT_DOMAIN if host in LEGACY_DOMAINS else host
