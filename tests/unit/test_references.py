"""Docker reference normalisation and the credential store."""

from __future__ import annotations

import base64
import json

import pytest

from layerctl.errors import InvalidName
from layerctl.oci.registry import auth
from layerctl.oci.registry.reference import parse_reference, registry_key

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "domain", "path", "tag", "digest", "familiar"),
    [
        ("debian", "docker.io", "library/debian", "latest", None, "debian:latest"),
        ("debian:12", "docker.io", "library/debian", "12", None, "debian:12"),
        ("user/app:1", "docker.io", "user/app", "1", None, "user/app:1"),
        ("docker.io/debian", "docker.io", "library/debian", "latest", None, "debian:latest"),
        ("index.docker.io/library/x", "docker.io", "library/x", "latest", None, "x:latest"),
        ("library/x/y", "docker.io", "library/x/y", "latest", None, "library/x/y:latest"),
        ("localhost/app", "localhost", "app", "latest", None, "localhost/app:latest"),
        ("localhost:5000/a/b:t", "localhost:5000", "a/b", "t", None, "localhost:5000/a/b:t"),
        ("127.0.0.1:5000/x", "127.0.0.1:5000", "x", "latest", None, "127.0.0.1:5000/x:latest"),
        ("Quay.IO/x", "Quay.IO", "x", "latest", None, "Quay.IO/x:latest"),
        (f"debian@{DIGEST}", "docker.io", "library/debian", None, DIGEST, f"debian@{DIGEST}"),
        (f"a/b:1@{DIGEST}", "docker.io", "a/b", "1", DIGEST, f"a/b:1@{DIGEST}"),
        ("[::1]:5000/x:2", "[::1]:5000", "x", "2", None, "[::1]:5000/x:2"),
    ],
)
def test_normalisation(text, domain, path, tag, digest, familiar):
    ref = parse_reference(text)
    assert (ref.domain, ref.path, ref.tag, ref.digest) == (domain, path, tag, digest)
    assert ref.familiar() == familiar


def test_api_host_and_loopback():
    assert parse_reference("debian").api_host == "registry-1.docker.io"
    assert parse_reference("127.0.0.1:5000/x").is_loopback
    assert parse_reference("localhost/x").is_loopback
    assert parse_reference("[::1]:5000/x").is_loopback
    assert not parse_reference("example.com/x").is_loopback
    assert parse_reference(f"x:1@{DIGEST}").api_ref == DIGEST
    assert parse_reference("x:1").api_ref == "1"


@pytest.mark.parametrize(
    "text",
    ["Debian", "a//b", "x:", "x:-bad", "x@sha256:12", "/x", "ab" * 32, "x:y:z", "a/B/c"],
)
def test_invalid(text):
    with pytest.raises(InvalidName):
        parse_reference(text)


def test_registry_key():
    assert registry_key("https://index.docker.io/v1/") == "docker.io"
    assert registry_key("registry-1.docker.io") == "docker.io"
    assert registry_key("http://127.0.0.1:5000/v2/") == "127.0.0.1:5000"
    assert registry_key("Quay.io") == "quay.io"


@pytest.fixture
def config_dirs(tmp_path, monkeypatch):
    own, docker = tmp_path / "layerctl", tmp_path / "docker"
    monkeypatch.setenv("LAYERCTL_CONFIG_DIR", str(own))
    monkeypatch.setenv("DOCKER_CONFIG", str(docker))
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    return own, docker


def test_store_get_remove(config_dirs):
    own, _ = config_dirs
    assert auth.get_credentials("example.com") is None
    path = auth.store_credentials("https://example.com/", auth.Credentials("jane", "p:w"))
    assert path == str(own / "config.json")
    assert (own / "config.json").stat().st_mode & 0o777 == 0o600
    data = json.loads((own / "config.json").read_text())
    assert data == {"auths": {"example.com": {"auth": base64.b64encode(b"jane:p:w").decode()}}}
    assert auth.get_credentials("example.com") == auth.Credentials("jane", "p:w")
    assert auth.remove_credentials("example.com")
    assert not auth.remove_credentials("example.com")
    assert auth.get_credentials("example.com") is None


def test_docker_config_is_read(config_dirs, tmp_path):
    own, docker = config_dirs
    docker.mkdir()
    token = base64.b64encode(b"hub:secret").decode()
    (docker / "config.json").write_text(
        json.dumps(
            {
                "auths": {
                    "https://index.docker.io/v1/": {"auth": token},
                    "reg.example:5000": {"auth": base64.b64encode(b"r:s").decode()},
                },
                "credHelpers": {"helped.example": "fake"},
            }
        )
    )
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-fake"
    helper.write_text(
        '#!/bin/sh\nread server\necho "{\\"Username\\":\\"h\\",\\"Secret\\":\\"$server\\"}"\n'
    )
    helper.chmod(0o755)
    assert auth.get_credentials("docker.io") == auth.Credentials("hub", "secret")
    assert auth.get_credentials("reg.example:5000") == auth.Credentials("r", "s")
    assert auth.get_credentials("helped.example") == auth.Credentials("h", "helped.example")
    # layerctl's own file wins
    auth.store_credentials("docker.io", auth.Credentials("mine", "pw"))
    assert auth.get_credentials("docker.io") == auth.Credentials("mine", "pw")
    assert not (docker / "config.json").read_text().count("mine")
