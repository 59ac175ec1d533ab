"""Reading /etc/passwd and /etc/group inside a container's rootfs without following
its symlinks out of it: `-u NAME` resolved as the image would."""

from __future__ import annotations

import os
import stat

from layerctl.errors import BadInput, NotFound

# -- reading files inside the rootfs safely ----------------------------------------


def resolve_in_root(rootfs: str, path: str) -> str:
    """Host path of `path` inside `rootfs`, following symlinks as if rootfs were /
    (a symlink in a hostile image can never lead out of it)."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    done: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if done:
                done.pop()
            continue
        host = os.path.join(rootfs, *done, part)
        if os.path.islink(host):
            hops += 1
            if hops > 40:
                raise BadInput(f"{path}: too many levels of symbolic links in the image")
            target = os.readlink(host)
            if target.startswith("/"):
                done = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        done.append(part)
    return os.path.join(rootfs, *done)


USER_DB_LIMIT = 16 << 20  # /etc/passwd or /etc/group larger than this is refused


def _read_db(rootfs: str, name: str) -> list[list[str]]:
    """The colon-separated records of /etc/passwd or /etc/group in the image: a
    missing file has none; one that is not a regular file (a FIFO, a device) or
    is absurdly large is refused, never read (the image may be hostile)."""
    from layerctl.beneath import Changed, Tree

    rel = os.fsencode(os.path.relpath(resolve_in_root(rootfs, name), rootfs))
    tree = Tree(os.fsencode(rootfs))
    try:
        st = tree.lstat(rel)
        if st is None:
            return []
        if not stat.S_ISREG(st.st_mode):
            raise BadInput(f"{name} in the image is not a regular file; cannot look up users")
        if st.st_size > USER_DB_LIMIT:
            raise BadInput(f"{name} in the image is larger than {USER_DB_LIMIT >> 20} MiB")
        data = tree.read(rel, USER_DB_LIMIT + 1, st)
    except Changed:
        raise BadInput(f"{name} in the image changed while read; try again") from None
    except OSError:
        return []
    finally:
        tree.close()
    if len(data) > USER_DB_LIMIT:
        raise BadInput(f"{name} in the image is larger than {USER_DB_LIMIT >> 20} MiB")
    text = data.decode("utf-8", "replace")
    return [line.split(":") for line in text.split("\n") if line.strip() and line[0] != "#"]


def resolve_user(rootfs: str, user: str | None) -> dict:
    """An OCI ``process.user`` (+ "home") for Docker's ``user[:group]`` (names or ids)."""
    user = (user or "").strip() or "0"
    name, _, group = user.partition(":")
    passwd = _read_db(rootfs, "/etc/passwd")
    groups = _read_db(rootfs, "/etc/group")
    entry = None
    if name.isdigit():
        uid = int(name)
        entry = next((e for e in passwd if len(e) >= 7 and e[2] == name), None)
    else:
        entry = next((e for e in passwd if len(e) >= 7 and e[0] == name), None)
        if entry is None:
            raise NotFound(f"unable to find user {name}: no matching entries in passwd file")
        uid = int(entry[2])
    gid = int(entry[3]) if entry is not None and entry[3].isdigit() else 0
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            gentry = next((g for g in groups if len(g) >= 3 and g[0] == group), None)
            if gentry is None:
                raise NotFound(f"unable to find group {group}: no matching entries in group file")
            gid = int(gentry[2])
    extra: list[int] = []
    if entry is not None and not group:
        for g in groups:
            if len(g) >= 4 and entry[0] in g[3].split(",") and g[2].isdigit():
                if int(g[2]) != gid and int(g[2]) not in extra:
                    extra.append(int(g[2]))
    home = entry[5] if entry is not None and entry[5] else "/"
    out: dict = {"uid": uid, "gid": gid, "home": home}
    if extra:
        out["additionalGids"] = extra
    return out
