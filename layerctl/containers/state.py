"""Container state: one directory per container under Store.path("containers", ID).

    containers/ID/state.json   name, image, driver, created, lower (written atomically);
                               extra["incomplete"] while a create or rm runs (see broken())
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
import re
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from layerctl import faults
from layerctl.atomic import write_json
from layerctl.errors import Ambiguous, Conflict, InvalidName, Locked, NotFound
from layerctl.record import Record
from layerctl.store import debris

if TYPE_CHECKING:
    from layerctl.images import ImageName
    from layerctl.store.repo import Store

REF_PREFIX = "refs/containers/"
DRIVER_NAMES = ("overlay", "vfs")  # what Container.driver may be (drivers.DRIVERS)
INCOMPLETE = "incomplete"  # extra[...] while a create or rm runs: {pid, started, doing}
CREATING_PREFIX = ".tmp-"
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


class Container(Record):
    """A container's persistent state (base layer: see `base`); state.json holds its
    fields by name."""

    __slots__ = ("id", "name", "image", "driver", "created", "lower", "driver_note", "extra")

    def __init__(self, id: str, name: str, image: str, driver: str, created: float,
                 lower: str | None = None, driver_note: str = "",
                 extra: dict[str, Any] | None = None):
        self.id = id
        self.name = name
        self.image = image  # the image reference it was created from, as the user typed it
        self.driver = driver  # "overlay" or "vfs"
        self.created = created
        self.lower = lower  # overlay: layer whose checkout is (or was last) the lower dir
        self.driver_note = driver_note  # why the driver was chosen, when not the one asked
        self.extra = {} if extra is None else extra

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def ref(self) -> str:
        return REF_PREFIX + self.id


def containers_dir(store: Store) -> str:
    return store.path("containers")


def state_dir(store: Store, cid: str) -> str:
    return store.path("containers", cid)


def base(store: Store, c: Container) -> str:
    """The container's base layer id."""
    value = store.ref(c.ref)
    if value is None:
        raise NotFound(f"container {c.name} has no base layer (ref {c.ref} missing)")
    return value


def write_json_atomic(path: str, data: object) -> None:
    write_json(path, data)


def save(store: Store, c: Container) -> None:
    write_json_atomic(os.path.join(state_dir(store, c.id), "state.json"), c.as_dict())


def load(store: Store, cid: str) -> Container:
    path = os.path.join(state_dir(store, cid), "state.json")
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise NotFound(f"no such container: {cid}") from None
    return Container(**data)


def all_ids(store: Store) -> list[str]:
    try:
        names = os.listdir(containers_dir(store))
    except FileNotFoundError:
        return []
    return sorted(
        n for n in names
        if len(n) == 64 and os.path.isfile(os.path.join(containers_dir(store), n, "state.json"))
    )


def list_containers(store: Store) -> list[Container]:
    """Complete containers, and those a killed create or rm left (see `broken`);
    not those another process is creating right now."""
    out = []
    for cid in all_ids(store):
        with contextlib.suppress(NotFound):
            c = load(store, cid)
            if not _in_progress(c):
                out.append(c)
    return sorted(out, key=lambda c: -c.created)


def _mark(doing: str) -> dict[str, Any]:
    pid = os.getpid()
    return {"pid": pid, "started": debris.start_time(pid), "doing": doing}


def _in_progress(c: Container) -> bool:
    doing = c.extra.get(INCOMPLETE)
    if not doing:
        return False
    return debris.process_alive(doing["pid"], doing.get("started"))


def broken(c: Container) -> str:
    """Why `c` is unusable ("" if it is fine): a create or rm killed half-way, or a
    driver this layerctl does not know."""
    if c.driver not in DRIVER_NAMES:
        return f"its driver {c.driver!r} is unknown to this layerctl"
    doing = c.extra.get(INCOMPLETE)
    if not doing or _in_progress(c):
        return ""
    return f"its {doing['doing']} was interrupted"


def _usable(c: Container) -> Container:
    why = broken(c)
    if why:
        raise Conflict(f"container {c.name} is broken ({why}); remove it with "
                       f"`layerctl rm {c.short_id}`")
    if _in_progress(c):
        raise Locked(f"container {c.name} is being {c.extra[INCOMPLETE]['doing']}d by "
                     "another layerctl process; try again")
    return c


def resolve(store: Store, ref: str, broken_ok: bool = False) -> Container:
    """A container by name, full id or unique id prefix. A broken one (see
    `broken`) is an error unless `broken_ok` (for rm)."""
    found = _resolve(store, ref)
    return found if broken_ok and not _in_progress(found) else _usable(found)


def _resolve(store: Store, ref: str) -> Container:
    name_file = os.path.join(containers_dir(store), NAMES_DIR, ref)
    if _NAME_RE.match(ref):
        try:
            with open(name_file) as f:
                return load(store, f.read().strip())
        except (FileNotFoundError, NotFound):
            pass
    if _HEX_RE.match(ref):
        matches = [cid for cid in all_ids(store) if cid.startswith(ref)]
        if len(matches) == 1:
            return load(store, matches[0])
        if len(matches) > 1:
            raise Ambiguous(f"container id {ref} is ambiguous: matches {len(matches)} containers")
    raise NotFound(f"no such container: {ref}")


def users_of(store: Store, name: ImageName) -> list[Container]:
    """The containers created from image `name` (an images.ImageName), as Docker's
    `rmi` looks for them: by the reference the container was created from."""
    from layerctl.errors import InvalidName
    from layerctl.images import parse_name

    out = []
    for c in list_containers(store):
        try:
            if parse_name(c.image) == name:
                out.append(c)
        except InvalidName:
            continue  # created from a layer id, not a name
    return out


def remove_images(store: Store, names: list[ImageName], force: bool = False
                  ) -> list[tuple[ImageName, str]]:
    """Untag images (images.ImageName) as Docker's `rmi` does: none of them while a
    container was created from one, unless `force`. Returns (name, layer id) untagged."""
    from layerctl.errors import Conflict
    from layerctl.images import remove_tag

    for name in names if not force else ():
        users = users_of(store, name)
        if users:  # Docker's refusal, word for word where it applies
            raise Conflict(f"conflict: unable to remove repository reference \"{name}\" "
                           f"(must force) - container {users[0].short_id} is using its "
                           "referenced image")
    return [(name, remove_tag(store, name)) for name in names]


def find(store: Store, ref: str) -> Container | None:
    try:
        return resolve(store, ref)
    except NotFound:
        return None


def _generated_name(store: Store) -> str:
    import random  # creating a container only

    rng = random.SystemRandom()
    for _ in range(100):
        name = f"{rng.choice(_ADJECTIVES)}_{rng.choice(_NOUNS)}"
        if name != "boring_wozniak" and not os.path.exists(
            os.path.join(containers_dir(store), NAMES_DIR, name)
        ):
            return name
    return f"container_{os.urandom(4).hex()}"


def new_container(
    store: Store, image: str, layer_id: str, driver: str, name: str | None, note: str = ""
) -> Container:
    """Make the state dir, reserve the name and set the base ref; the driver fills the
    rest, then `finish_create`. Until then the container is marked incomplete: hidden
    while this process lives, shown as broken (and removable) if it was killed."""
    if name is not None and not _NAME_RE.match(name):
        raise InvalidName(
            f"invalid container name {name!r}: use [a-zA-Z0-9][a-zA-Z0-9_.-]*"
        )
    if name is not None and _HEX_RE.match(name) and len(name) == 64:
        raise InvalidName(f"invalid container name {name!r}: looks like a container id")
    names = os.path.join(containers_dir(store), NAMES_DIR)
    os.makedirs(names, exist_ok=True)
    clean_debris(store)
    cid = os.urandom(32).hex()
    chosen = name or _generated_name(store)
    c = Container(cid, chosen, image, driver, time.time(), driver_note=note)
    c.extra[INCOMPLETE] = _mark("create")
    # The state dir appears with its state.json in it (a rename), so every
    # container dir says what it is.
    import tempfile  # creating a container only

    tmp = tempfile.mkdtemp(prefix=f"{CREATING_PREFIX}{os.getpid()}-", dir=containers_dir(store))
    write_json_atomic(os.path.join(tmp, "state.json"), c.as_dict())
    faults.point("create.publish-state")
    os.rename(tmp, state_dir(store, cid))
    try:
        faults.point("create.reserve-name")
        fd = _reserve_name(store, os.path.join(names, chosen), chosen)
        with os.fdopen(fd, "w") as f:
            f.write(cid + "\n")
        faults.point("create.set-base")
        store.set_ref(c.ref, None, layer_id, f"create container {chosen}")
    except BaseException:
        with contextlib.suppress(Exception):
            destroy(store, c)
        raise
    return c


def _reserve_name(store: Store, path: str, name: str) -> int:
    """O_EXCL-create the name file; a name held by a container that a killed create
    or rm left broken is taken over (that container never held any work)."""
    for attempt in range(2):
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            if attempt:
                break
            try:
                with open(path) as f:
                    owner = load(store, f.read().strip())
            except FileNotFoundError:
                continue
            except NotFound:  # a name whose container is gone
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                continue
            if not broken(owner):
                break
            destroy(store, owner)
    raise Conflict(f"the container name {name!r} is already in use")


def finish_create(store: Store, c: Container) -> None:
    """The container is complete: list it as usual from now on."""
    c.extra.pop(INCOMPLETE, None)
    faults.point("create.mark-complete")
    save(store, c)


def destroy(store: Store, c: Container) -> None:
    """Remove the state, the name and the base ref (the caller made sure nothing is mounted).

    Marked incomplete first, so a kill half-way leaves a broken container that
    `rm` removes, not debris that blocks its name.
    """
    import shutil  # removing a container only (shutil pulls bz2, lzma)

    path = state_dir(store, c.id)
    c.extra[INCOMPLETE] = _mark("rm")
    with contextlib.suppress(OSError):  # gone already, or a full disk: remove it all the same
        save(store, c)
    # The bulk first: on a full disk, the ref update below needs a page to write.
    faults.point("rm.remove-files")
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(path):
            if entry.name != "state.json":
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)
    faults.point("rm.delete-base")
    current = store.ref(c.ref)
    if current is not None:
        store.delete_ref(c.ref, current)
    faults.point("rm.remove-state")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(path, "state.json"))
    shutil.rmtree(path, ignore_errors=True)
    # The name goes last: until then `rm NAME` finds the broken container again.
    faults.point("rm.free-name")
    name_file = os.path.join(containers_dir(store), NAMES_DIR, c.name)
    with contextlib.suppress(FileNotFoundError):
        with open(name_file) as f:
            owner = f.read().strip()
        if owner == c.id:  # a container that never got its name must not free another's
            os.unlink(name_file)


def clean_debris(store: Store) -> list[str]:
    """State dirs of creates killed before their first rename (for fsck)."""
    return debris.clean_dead_dirs(containers_dir(store), CREATING_PREFIX)


def clean_all_debris(store: Store) -> list[str]:
    """What killed container commands left, also overlay probes still mounted (fsck)."""
    from .overlayfs import clean_dead_probes

    return clean_debris(store) + clean_dead_probes(store.path("cache", "probe"))


@contextlib.contextmanager
def locked(store: Store, c: Container) -> Iterator[None]:
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
