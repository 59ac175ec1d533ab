"""Container state: one directory per container under Store.path("containers", ID).

    containers/ID/state.json   name, image, driver, created, lower (written atomically)
    containers/ID/lock         flock()ed by every operation that changes the container
    containers/ID/upper|work|merged   overlay driver
    containers/ID/rootfs              vfs driver
    containers/_names/NAME     the id owning NAME (created with O_EXCL: names are unique)

The container's base layer is the git ref refs/containers/ID, moved with
compare-and-swap, so it is the single source of truth (and keeps the layers a
container committed reachable for git fsck/gc).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import random
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

from layerctl.errors import Ambiguous, Conflict, InvalidName, Locked, NotFound

REF_PREFIX = "refs/containers/"
NAMES_DIR = "_names"
_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}\Z")  # \Z: "$" lets a newline end it
_HEX_RE = re.compile(r"^[0-9a-f]{1,64}\Z")

_ADJECTIVES = (
    "admiring adoring agitated amazing angry awesome blissful bold boring brave busy charming "
    "clever cool compassionate confident dazzling determined eager ecstatic elastic elated "
    "epic exciting fervent festive flamboyant focused friendly frosty gallant gifted goofy "
    "gracious happy hardcore heuristic hopeful hungry infallible inspiring jolly jovial keen "
    "kind laughing loving lucid magical modest musing mystifying naughty nervous nice nifty "
    "nostalgic objective optimistic peaceful pedantic pensive practical priceless quirky "
    "quizzical relaxed reverent romantic sad serene sharp silly sleepy stoic strange "
    "suspicious sweet tender thirsty trusting unruffled upbeat vibrant vigilant vigorous "
    "wizardly wonderful xenodochial youthful zealous zen"
).split()
_NOUNS = (
    "agnesi albattani allen babbage banach bardeen bartik bell blackwell bohr booth borg bose "
    "brahmagupta brown burnell cannon carson cerf chandrasekhar clarke curie darwin davinci "
    "diffie dijkstra einstein elion engelbart euclid euler fermat feynman franklin galileo "
    "gauss goldberg goodall hamilton hawking heisenberg hermann hodgkin hopper hypatia "
    "jackson jennings johnson kalam keller kepler khorana knuth lamarr lamport leakey "
    "lovelace lumiere mayer mccarthy mcclintock meitner mendel merkle mirzakhani montalcini "
    "moore morse napier newton nobel noether pare pascal pasteur perlman pike poincare "
    "ptolemy ramanujan ride ritchie robinson rosalind sammet shannon shockley sinoussi "
    "stallman swartz tesla thompson torvalds turing varahamihira villani wescoff wiles "
    "williams wilson wing wozniak wright yalow yonath"
).split()


@dataclass
class Container:
    """A container's persistent state (base layer: see `base`)."""

    id: str
    name: str
    image: str  # the image reference it was created from, as the user typed it
    driver: str  # "overlay" or "vfs"
    created: float
    lower: str | None = None  # overlay: layer whose checkout is (or was last) the lower dir
    driver_note: str = ""  # why the driver was chosen, when it was not the one asked for
    extra: dict = field(default_factory=dict)

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def ref(self) -> str:
        return REF_PREFIX + self.id


def containers_dir(store: object) -> str:
    return store.path("containers")


def state_dir(store: object, cid: str) -> str:
    return store.path("containers", cid)


def base(store: object, c: Container) -> str:
    """The container's base layer id."""
    value = store.ref(c.ref)
    if value is None:
        raise NotFound(f"container {c.name} has no base layer (ref {c.ref} missing)")
    return value


def write_json_atomic(path: str, data: object) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)


def save(store: object, c: Container) -> None:
    write_json_atomic(os.path.join(state_dir(store, c.id), "state.json"), asdict(c))


def load(store: object, cid: str) -> Container:
    path = os.path.join(state_dir(store, cid), "state.json")
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise NotFound(f"no such container: {cid}") from None
    return Container(**data)


def all_ids(store: object) -> list[str]:
    try:
        names = os.listdir(containers_dir(store))
    except FileNotFoundError:
        return []
    return sorted(
        n for n in names
        if len(n) == 64 and os.path.isfile(os.path.join(containers_dir(store), n, "state.json"))
    )


def list_containers(store: object) -> list[Container]:
    out = []
    for cid in all_ids(store):
        with contextlib.suppress(NotFound):
            out.append(load(store, cid))
    return sorted(out, key=lambda c: -c.created)


def resolve(store: object, ref: str) -> Container:
    """A container by name, full id or unique id prefix."""
    name_file = os.path.join(containers_dir(store), NAMES_DIR, ref)
    if _NAME_RE.match(ref):
        try:
            with open(name_file) as f:
                return load(store, f.read().strip())
        except FileNotFoundError:
            pass
    if _HEX_RE.match(ref):
        matches = [cid for cid in all_ids(store) if cid.startswith(ref)]
        if len(matches) == 1:
            return load(store, matches[0])
        if len(matches) > 1:
            raise Ambiguous(f"container id {ref} is ambiguous: matches {len(matches)} containers")
    raise NotFound(f"no such container: {ref}")


def find(store: object, ref: str) -> Container | None:
    try:
        return resolve(store, ref)
    except NotFound:
        return None


def _generated_name(store: object) -> str:
    rng = random.SystemRandom()
    for _ in range(100):
        name = f"{rng.choice(_ADJECTIVES)}_{rng.choice(_NOUNS)}"
        if name != "boring_wozniak" and not os.path.exists(
            os.path.join(containers_dir(store), NAMES_DIR, name)
        ):
            return name
    return f"container_{secrets.token_hex(4)}"


def new_container(
    store: object, image: str, layer_id: str, driver: str, name: str | None, note: str = ""
) -> Container:
    """Reserve a name, make the state dir and the base ref; the driver fills the rest."""
    if name is not None and not _NAME_RE.match(name):
        raise InvalidName(
            f"invalid container name {name!r}: use [a-zA-Z0-9][a-zA-Z0-9_.-]*"
        )
    if name is not None and _HEX_RE.match(name) and len(name) == 64:
        raise InvalidName(f"invalid container name {name!r}: looks like a container id")
    names = os.path.join(containers_dir(store), NAMES_DIR)
    os.makedirs(names, exist_ok=True)
    cid = secrets.token_hex(32)
    chosen = name or _generated_name(store)
    try:
        fd = os.open(os.path.join(names, chosen), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise Conflict(f"the container name {chosen!r} is already in use") from None
    with os.fdopen(fd, "w") as f:
        f.write(cid + "\n")
    os.makedirs(state_dir(store, cid))
    c = Container(cid, chosen, image, driver, time.time(), driver_note=note)
    store.set_ref(c.ref, None, layer_id, f"create container {chosen}")
    save(store, c)
    return c


def destroy(store: object, c: Container) -> None:
    """Remove the state, the name and the base ref (the caller made sure nothing is mounted)."""
    path = state_dir(store, c.id)
    os.rename(os.path.join(path, "state.json"), os.path.join(path, "state.json.removed"))
    current = store.ref(c.ref)
    if current is not None:
        store.delete_ref(c.ref, current)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(containers_dir(store), NAMES_DIR, c.name))
    shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def locked(store: object, c: Container) -> Iterator[None]:
    """Hold the container's lock; a second holder gets errors.Locked at once."""
    path = os.path.join(state_dir(store, c.id), "lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise Locked(
                    f"container {c.name} is locked by another layerctl process; try again"
                ) from None
            raise
        yield
    finally:
        os.close(fd)
