"""git remotes: images and their layer history travel as git refs and objects.

A remote is a plain git remote in the store's config (`[remote "NAME"] url`,
fetch refspec `refs/images/*:refs/images/*`), so stock git can use it too.
`push` and `fetch` move image refs (refs/images/<repo>/_tags/<tag>) with the
objects they reach, over any transport dulwich speaks: local paths, file://,
git://, http(s):// and ssh.

Ref updates follow git's rules for branches, not Docker's for tags: a tag
that is new or moves forward (the old layer is an ancestor of the new one,
e.g. after `commit` on top of the image) is updated; one that would move to
an unrelated layer is rejected unless `force`, so a fetch never silently drops
local layers. Container refs never travel.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from layerctl import faults
from layerctl.errors import BadInput, Conflict, LayerctlError, NotFound
from layerctl.images import REF_PREFIX, ImageName, name_from_ref

if TYPE_CHECKING:
    from layerctl.store.repo import Store

FETCH_REFSPEC = "+refs/images/*:refs/images/*"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
ZERO = "0" * 40

# outcome of one ref update
NEW, FORWARD, FORCED, UP_TO_DATE, REJECTED, FAILED = (
    "new",
    "forward",
    "forced",
    "up to date",
    "rejected",
    "failed",
)


class RemoteError(LayerctlError):
    """A git remote that cannot be reached or refused the transfer."""


@dataclass(frozen=True)
class RefUpdate:
    image: ImageName
    old: str | None
    new: str
    status: str
    reason: str = ""


# -- configuration ------------------------------------------------------------------


def _config(store: Store):  # noqa: ANN202 - dulwich ConfigFile
    return store.repo.get_config()


def list_remotes(store: Store) -> dict[str, str]:
    """name -> url, in config order."""
    config = _config(store)
    out = {}
    for section in config.sections():
        if len(section) == 2 and section[0] == b"remote":
            try:
                out[section[1].decode()] = config.get(section, b"url").decode()
            except KeyError:
                continue
    return out


def add_remote(store: Store, name: str, url: str) -> None:
    if not _NAME.match(name) or ".." in name or name.endswith(".lock"):
        raise BadInput(f"invalid remote name {name!r}: use letters, digits, '.', '_' and '-'")
    if not url.strip():
        raise BadInput("remote URL is empty")
    if name in list_remotes(store):
        raise Conflict(f"remote {name} already exists")
    config = _config(store)
    section = (b"remote", name.encode())
    config.set(section, b"url", url.encode())
    config.set(section, b"fetch", FETCH_REFSPEC.encode())
    config.write_to_path()


def remove_remote(store: Store, name: str) -> None:
    if name not in list_remotes(store):
        raise NotFound(f"no such remote: {name}")
    config = _config(store)
    del config[(b"remote", name.encode())]
    config.write_to_path()


def remote_url(store: Store, name_or_url: str) -> str:
    """The URL of a configured remote; anything that looks like a URL or path passes."""
    remotes = list_remotes(store)
    if name_or_url in remotes:
        return remotes[name_or_url]
    if "/" in name_or_url or ":" in name_or_url:
        return name_or_url
    raise NotFound(f"no such remote: {name_or_url} (see `layerctl remote -v`)")


# -- transfers ---------------------------------------------------------------------


def _client(url: str):  # noqa: ANN202 - (dulwich GitClient, path)
    from dulwich.client import get_transport_and_path

    try:
        return get_transport_and_path(url)
    except ValueError as e:
        raise BadInput(f"unsupported remote URL {url!r}: {e}") from None


def _is_ancestor(store: Store, old: str, new: str) -> bool:
    """Is layer `old` reachable from `new` through first parents?"""
    from dulwich.objects import Commit

    from layerctl.store.objects import COMMIT

    current: str | None = new
    while current:
        if current == old:
            return True
        if not store.has(bytes.fromhex(current)):
            return False
        type_num, raw = store.read_raw(current.encode())
        if type_num != COMMIT:
            return False
        parents = Commit.from_raw_string(COMMIT, raw).parents
        current = parents[0].decode() if parents else None
    return False


def _decide(store: Store, ref: str, old: str | None, new: str, force: bool) -> RefUpdate:
    image = name_from_ref(ref)
    if old == new:
        return RefUpdate(image, old, new, UP_TO_DATE)
    if old is None:
        return RefUpdate(image, old, new, NEW)
    if _is_ancestor(store, old, new):
        return RefUpdate(image, old, new, FORWARD)
    if force:
        return RefUpdate(image, old, new, FORCED)
    return RefUpdate(image, old, new, REJECTED, "not a descendant; use --force")


def _transport_errors() -> tuple[type[Exception], ...]:
    """What dulwich raises when a remote is missing, unreachable or refuses."""
    from dulwich.client import HTTPProxyUnauthorized, HTTPUnauthorized
    from dulwich.errors import GitProtocolError, NotGitRepository, ObjectFormatException

    return (
        OSError,
        GitProtocolError,  # includes HangupException and SendPackError
        NotGitRepository,
        HTTPUnauthorized,
        HTTPProxyUnauthorized,
        ObjectFormatException,
    )


def _transport_error(url: str, e: Exception) -> RemoteError:
    text = str(e).strip().splitlines()
    detail = text[0] if text else type(e).__name__
    return RemoteError(f"git remote {url}: {detail}")


def _selected(refs: dict[str, str], images: list[ImageName] | None) -> dict[str, str]:
    """The image refs of `refs` (all, or those of `images`)."""
    out = {r: s for r, s in refs.items() if r.startswith(REF_PREFIX) and not r.endswith("^{}")}
    if images is None:
        return out
    wanted = {image.ref for image in images}
    return {r: s for r, s in out.items() if r in wanted}


def _known_layers(store: Store) -> set[str]:
    """Layers the store's own refs reach: they passed validation (or were made here)
    when they came in, so a fetch stops checking there."""
    from dulwich.objects import Commit

    from layerctl.store.objects import COMMIT

    known: set[str] = set()
    for tip in store.refs_under("refs").values():
        current: str | None = tip
        while current and current not in known:
            try:
                type_num, raw = store.read_raw(current.encode())
                parents = Commit.from_raw_string(COMMIT, raw).parents if type_num == COMMIT else []
            except Exception:  # not a layer: fsck reports it; it vouches for nothing
                break
            known.add(current)
            current = parents[0].decode() if parents else None
    return known


def _refuse(url: str, problems: list[str]) -> RemoteError:
    more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
    return RemoteError(f"git remote {url}: refusing {problems[0]}{more}; no image was changed")


def fetch(
    store: Store,
    url: str,
    images: list[ImageName] | None = None,
    force: bool = False,
    progress: Callable[[bytes], None] | None = None,
) -> list[RefUpdate]:
    """Fetch image refs (all, or `images`) and their layers from `url`.

    The remote is not trusted: its objects land in the store (inert there), but
    no ref moves until every ref name follows the image-name grammar and every
    new layer passes layerctl.store.validate; otherwise nothing moves at all.
    """
    from layerctl.images import ref_problem
    from layerctl.store.validate import Validator

    client, path = _client(url)
    found: dict[str, str] = {}
    refused: list[str] = []

    def determine_wants(refs: dict, depth: int | None = None) -> list:
        offered = {k.decode("utf-8", "replace"): v.decode() for k, v in refs.items() if v}
        for ref, sha in sorted(_selected(offered, images).items()):
            problem = ref_problem(ref)
            if problem is None and not re.fullmatch(r"[0-9a-f]{40}", sha):
                problem = f"points at {sha!r}, not an object id"
            if problem:
                refused.append(f"{ref}: {problem}")
            else:
                found[ref] = sha
        if refused:
            return []  # download nothing from a remote that serves bad refs
        return sorted({s.encode() for s in found.values() if not store.has(bytes.fromhex(s))})

    try:
        client.fetch(path, store.repo, determine_wants=determine_wants, progress=progress)
    except _transport_errors() as e:
        raise _transport_error(url, e) from None
    if refused:
        raise _refuse(url, refused)
    store.landed()
    if images is not None:
        missing = [str(i) for i in images if i.ref not in found]
        if missing:
            raise NotFound(f"{url} has no image {', '.join(missing)}")
    known = _known_layers(store)
    validator = Validator(store, trusted=known)
    for ref, new in sorted(found.items()):
        faults.point("fetch.validate")
        validator.check_layer(new, ref)
    if validator.problems:
        raise _refuse(url, validator.problems)
    from layerctl.tarsplit_check import record_problems

    kept = record_problems(store, found, known)  # kept original tars must be the layers'
    if kept:
        raise _refuse(url, kept)
    updates = []
    for ref, new in sorted(found.items()):
        update = _decide(store, ref, store.ref(ref), new, force)
        if update.status in (NEW, FORWARD, FORCED):
            faults.point("fetch.move-ref")
            store.set_ref(ref, update.old, new, f"fetch {url}")
        updates.append(update)
    return updates


def push(
    store: Store,
    url: str,
    images: list[ImageName] | None = None,
    force: bool = False,
    progress: Callable[[bytes], None] | None = None,
) -> list[RefUpdate]:
    """Push image refs (all, or `images`) and their layers to `url`."""
    local = _selected(store.refs_under(REF_PREFIX), images)
    if images is not None:
        missing = [str(i) for i in images if i.ref not in local]
        if missing:
            raise NotFound(f"no such image: {', '.join(missing)}")
    if not local:
        raise NotFound("no images to push")
    client, path = _client(url)
    updates: dict[str, RefUpdate] = {}

    def update_refs(remote: dict) -> dict:
        changes = {}
        for ref, new in sorted(local.items()):
            old = remote.get(ref.encode())
            update = _decide(store, ref, old.decode() if old else None, new, force)
            updates[ref] = update
            if update.status in (NEW, FORWARD, FORCED):
                changes[ref.encode()] = new.encode()
        return changes

    try:
        result = client.send_pack(
            path, update_refs, store.repo.generate_pack_data, progress=progress
        )
    except _transport_errors() as e:
        raise _transport_error(url, e) from None
    for ref, reason in (result.ref_status or {}).items():
        name = ref.decode()
        if reason and name in updates:
            u = updates[name]
            updates[name] = RefUpdate(u.image, u.old, u.new, FAILED, reason)
    return [updates[r] for r in sorted(updates)]
