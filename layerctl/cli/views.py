"""The bodies of the read commands `status`, `ps` and `images`, free of click: their
click commands (cli/containers.py, cli/images.py) parse options and call these, and
cli/entry.py calls them directly for a plain command line (start-up is most of a run).
"""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Any

from layerctl.cli.out import echo, table
from layerctl.errors import BadInput, Corrupt, LayerctlError, NotFound
from layerctl.words import ago, go_time, human_size, path_text

if TYPE_CHECKING:
    from layerctl.store.repo import Store


def _containers():  # noqa: ANN202 - the core package, imported when a command runs
    import layerctl.containers as containers

    return containers


# -- status ---------------------------------------------------------------------------


def default_container(store: Store, ref: str | None) -> str:
    if ref:
        return ref
    found = _containers().list_containers(store)
    if len(found) == 1:
        return found[0].id
    if not found:
        raise NotFound("no containers; create one with `layerctl create IMAGE`")
    raise BadInput(f"{len(found)} containers exist; name one (see `layerctl ps -a`)")


_KIND = {"C": 0, "A": 1, "D": 2}


def _json_path(path: bytes) -> str:
    """JSON escapes control characters itself: the path as it is (bytes that are not
    UTF-8 as \\xNN), not quoted for a terminal."""
    return "/" + path.decode("utf-8", "backslashreplace")


def _change_json(ch: object) -> dict:
    return {"Path": _json_path(ch.path), "Kind": _KIND[ch.status], "Status": ch.status,
            "Details": ch.details()}


def show_status(store: Store, container: str | None = None, as_json: bool = False,
                watch: bool = False) -> None:
    """A container's changes against its base layer (A added, C changed, D deleted)."""
    containers = _containers()
    if not as_json and os.path.exists(store.path("rebase", "state.json")):
        from layerctl.rewrite import progress_line  # only while a rebase is under way

        echo(progress_line(store))
    ref = default_container(store, container)
    watcher = None
    if watch:
        from layerctl.containers.watch import ChangeWatcher

        watcher = ChangeWatcher(store, containers.resolve(store, ref),
                                lambda updates: _show_updates(updates, as_json))
        changes = watcher.begin(lambda: containers.status(store, ref))
    else:
        changes = containers.status(store, ref)
    if as_json and not watch:
        echo(json.dumps([_change_json(ch) for ch in changes], indent=2))
        return
    if changes:
        echo("\n".join(f"{ch.status} {path_text(ch.path)}" for ch in changes))
    if watcher is None:
        return
    sys.stdout.flush()  # a pipe reader sees the starting state before any update
    try:
        watcher.run_forever()
    except KeyboardInterrupt:
        pass
    finally:
        watcher.stop()


def _show_updates(updates: list[tuple[bytes, Any]], as_json: bool) -> None:
    for path, ch in updates:
        if as_json:
            item = _change_json(ch) if ch else {"Path": _json_path(path), "Status": "clean"}
            echo(json.dumps(item))
        else:
            echo(f"{ch.status} {path_text(path)}" if ch else f"  {path_text(path)} "
                 "(no longer changed)")
    sys.stdout.flush()


# -- ps -------------------------------------------------------------------------------

PS_HEADERS = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND",
              "CreatedAt": "CREATED AT", "RunningFor": "CREATED", "Ports": "PORTS",
              "State": "STATE", "Status": "STATUS", "Size": "SIZE", "Names": "NAMES",
              "Labels": "LABELS", "Mounts": "MOUNTS", "Networks": "NETWORKS",
              "LocalVolumes": "LOCAL VOLUMES"}


def show_ps(store: Store, show_all: bool = False, quiet: bool = False,
            no_trunc: bool = False, fmt: str | None = None) -> None:
    """Containers (mounted ones; `show_all` for all)."""
    from layerctl.containers.state import broken

    containers = _containers()
    rows = []
    for c in containers.list_containers(store):
        mounted = containers.is_mounted(store, c)
        if not (show_all or mounted or broken(c)):  # a broken one needs the user's rm
            continue
        if quiet:
            echo(c.id if no_trunc else c.short_id)
            continue
        rows.append(_ps_row(store, c, mounted, no_trunc))
    if quiet:
        return
    if fmt:
        print_formatted(fmt, [r for r, _ in rows], PS_HEADERS, "*formatter.ContainerContext",
                        "table {{.ID}}\\t{{.Image}}\\t{{.Command}}\\t{{.RunningFor}}"
                        "\\t{{.Status}}\\t{{.Ports}}\\t{{.Names}}")
        return
    table([[r["ID"], r["Image"], base, r["RunningFor"], r["Status"], driver, r["Names"]]
           for r, (base, driver) in rows],
          ["CONTAINER ID", "IMAGE", "BASE LAYER", "CREATED", "STATUS", "DRIVER", "NAMES"])


def _ps_row(
    store: Store, c: object, mounted: bool, no_trunc: bool
) -> tuple[dict, tuple[str, str]]:
    """Docker's ps --format fields for one container (plus layerctl's driver and base
    layer for the default table, which the template does not see)."""
    from layerctl import runtime
    from layerctl.containers.state import broken
    from layerctl.store.layers import read_layer

    base = store.ref(c.ref) or ""
    config = {}
    if base:
        try:
            config = read_layer(store, base).config.get("config") or {}
        except Exception:  # noqa: BLE001 - a broken base shows as Broken in STATUS
            config = {}
    argv = (config.get("Entrypoint") or []) + (config.get("Cmd") or [])
    command = " ".join(argv)
    if not no_trunc and len(command) > 20:  # Docker: 20 characters, then an ellipsis
        command = command[:19] + "…"
    state = "dead" if broken(c) else runtime.status(store, c.id)[0]
    labels = config.get("Labels") or {}
    row = {
        "ID": c.id if no_trunc else c.short_id,
        "Image": c.image,
        "Command": f'"{command}"',
        "CreatedAt": go_time(c.created),
        "RunningFor": ago(c.created),
        "Ports": "",  # layerctl containers have no network namespace to publish
        "State": state if state in ("running", "exited", "dead") else "created",
        "Status": _state_text(store, c, mounted),
        "Size": "N/A",
        "Names": c.name,
        "Labels": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
        "Label": lambda key: labels.get(key, ""),
        "Mounts": "",
        "Networks": "",
        "LocalVolumes": "0",
    }
    return row, (base[:12], c.driver)


def _state_text(store: Store, c: object, mounted: bool) -> str:
    """Docker's STATUS words: Up, Exited (N), else whether the filesystem is mounted."""
    from layerctl import runtime
    from layerctl.containers.state import broken

    why = broken(c)
    if why:
        return f"Broken: {why} (rm it)"
    state, code = runtime.status(store, c.id)
    if state == "running":
        return "Up"
    if state == "exited":
        return f"Exited ({code})" if code is not None else "Exited"
    return "Mounted" if mounted else "Created"


# -- images ---------------------------------------------------------------------------


def image_rows(store: Store, no_trunc: bool = False) -> list[dict[str, str]]:
    """One dict per image with Docker's --format field names and values."""
    from layerctl.images import chain, image_id, image_size, list_images

    rows = []
    broken: list[tuple[str, str]] = []
    images = list_images(store, broken)
    for ref, reason in broken:
        echo(f"layerctl: warning: skipping {ref}: {reason} (see `layerctl fsck`)", err=True)
    for name, layer_id in images:
        try:
            layers = chain(store, layer_id)
        except Corrupt:
            raise  # a damaged store is the one thing to say (fsck finds the rest)
        except LayerctlError as e:  # one bad tag must not hide the others
            echo(f"layerctl: warning: skipping {name}: {e}", err=True)
            continue
        top = layers[-1]
        size = human_size(image_size(store, layers))
        full_id = image_id(layers, store)
        rows.append({
            "Containers": "N/A",  # Docker too, unless asked to count (system df)
            "CreatedAt": go_time(top.author_time),
            "CreatedSince": ago(top.author_time),
            "Digest": "<none>",  # layerctl keeps no registry manifest digest per tag
            "ID": full_id if no_trunc else full_id[7:19],
            "Repository": name.repository,
            "SharedSize": "N/A",
            "Size": size,
            "Tag": name.tag,
            "UniqueSize": "N/A",
            "VirtualSize": size,
        })
    return rows


IMAGE_HEADERS = {"Containers": "CONTAINERS", "CreatedAt": "CREATED AT",
                 "CreatedSince": "CREATED", "Digest": "DIGEST", "ID": "IMAGE ID",
                 "Repository": "REPOSITORY", "SharedSize": "SHARED SIZE", "Size": "SIZE",
                 "Tag": "TAG", "UniqueSize": "UNIQUE SIZE", "VirtualSize": "VIRTUAL SIZE"}


def print_formatted(fmt: str, rows: list[dict], headers: dict[str, str], type_name: str,
                    default: str) -> None:
    from layerctl.presentation.gotemplate import format_rows

    if fmt.strip() == "table":  # Docker: the bare word means the default table
        fmt = default
    elif fmt.strip() == "json":  # Docker's shorthand for {{json .}}
        fmt = "{{json .}}"
    echo(format_rows(fmt, rows, headers, type_name), nl=False)


def show_images(store: Store, quiet: bool = False, no_trunc: bool = False,
                fmt: str | None = None) -> None:
    """Images (REPOSITORY, TAG, IMAGE ID, CREATED, SIZE)."""
    rows = image_rows(store, no_trunc)
    if quiet:
        for row in rows:
            echo(row["ID"])
        return
    if fmt:
        print_formatted(fmt, rows, IMAGE_HEADERS, "*formatter.ImageContext",
                        "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}")
        return
    table([[r["Repository"], r["Tag"], r["ID"], r["CreatedSince"], r["Size"]] for r in rows],
          ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"])
