"""Registry credentials, stored the way Docker stores them.

layerctl's own file is `config.json` in LAYERCTL_CONFIG_DIR, else
$XDG_CONFIG_HOME/layerctl, else ~/.config/layerctl: `{"auths": {"HOST":
{"auth": base64("user:password")}}}`, mode 0600. `login` writes there;
Docker's config.json (DOCKER_CONFIG, else ~/.docker) is read as a fallback,
including its `credHelpers` / `credsStore` helpers (docker-credential-NAME).
Keys are registry hosts (docker.io for Docker Hub, whatever Docker wrote).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from dataclasses import dataclass

from layerctl.atomic import write_json
from layerctl.errors import BadInput
from layerctl.oci.registry.reference import DEFAULT_DOMAIN, registry_key

CONFIG_FILE = "config.json"


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str


def config_dir() -> str:
    """layerctl's configuration directory."""
    explicit = os.environ.get("LAYERCTL_CONFIG_DIR")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "layerctl")


def docker_config_dir() -> str:
    return os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")


def _read_config(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise BadInput(f"cannot read credentials file {path}: {e}") from None
    return data if isinstance(data, dict) else {}


def _decode(entry: object, where: str) -> Credentials | None:
    if not isinstance(entry, dict):
        return None
    if entry.get("auth"):
        try:
            user, sep, password = base64.b64decode(entry["auth"]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise BadInput(f"{where}: invalid base64 auth entry") from None
        if sep:
            return Credentials(user, password)
    if entry.get("username") and entry.get("password"):
        return Credentials(entry["username"], entry["password"])
    return None


def _lookup(auths: dict, host: str, where: str) -> Credentials | None:
    for key, entry in auths.items():
        if registry_key(key) == host:
            found = _decode(entry, where)
            if found:
                return found
    return None


def _helper_get(helper: str, host: str) -> Credentials | None:
    """Ask docker-credential-HELPER for `host`'s credentials (None if it has none)."""
    program = shutil.which(f"docker-credential-{helper}")
    if program is None:
        return None
    server = "https://index.docker.io/v1/" if host == DEFAULT_DOMAIN else host
    try:
        out = subprocess.run(
            [program, "get"], input=server, capture_output=True, text=True, timeout=30
        )
        data = json.loads(out.stdout) if out.returncode == 0 else {}
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None
    if data.get("Username") and data.get("Secret"):
        return Credentials(data["Username"], data["Secret"])
    return None


def get_credentials(server: str) -> Credentials | None:
    """Credentials for a registry: layerctl's file first, then Docker's."""
    host = registry_key(server)
    own_path = os.path.join(config_dir(), CONFIG_FILE)
    found = _lookup(_read_config(own_path).get("auths") or {}, host, own_path)
    if found:
        return found
    docker_path = os.path.join(docker_config_dir(), CONFIG_FILE)
    docker = _read_config(docker_path)
    helpers = docker.get("credHelpers") or {}
    for key, helper in helpers.items():
        if registry_key(key) == host:
            return _helper_get(helper, host)
    found = _lookup(docker.get("auths") or {}, host, docker_path)
    if found is None and docker.get("credsStore"):
        found = _helper_get(docker["credsStore"], host)
    return found


def _write_config(data: dict) -> str:
    directory = config_dir()
    os.makedirs(directory, mode=0o700, exist_ok=True)
    path = os.path.join(directory, CONFIG_FILE)
    write_json(path, data, mode=0o600)
    return path


def store_credentials(server: str, credentials: Credentials) -> str:
    """Save credentials for `server` in layerctl's file; returns the file's path."""
    path = os.path.join(config_dir(), CONFIG_FILE)
    data = _read_config(path)
    auths = data.setdefault("auths", {})
    host = registry_key(server)
    for key in [k for k in auths if registry_key(k) == host]:
        del auths[key]
    token = f"{credentials.username}:{credentials.password}".encode()
    auths[host] = {"auth": base64.b64encode(token).decode()}
    return _write_config(data)


def remove_credentials(server: str) -> bool:
    """Forget `server`'s credentials in layerctl's file; False if there were none."""
    path = os.path.join(config_dir(), CONFIG_FILE)
    data = _read_config(path)
    auths = data.get("auths") or {}
    host = registry_key(server)
    keys = [k for k in auths if registry_key(k) == host]
    for key in keys:
        del auths[key]
    if keys:
        _write_config(data)
    return bool(keys)
