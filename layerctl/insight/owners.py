"""Which package shipped a wasted copy: the owner of a path in the layer that shipped
it, read from that layer's package database and kept per layer id in the store cache."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from layerctl.insight.history import Target

if TYPE_CHECKING:
    from layerctl.insight.pkgdb import Package
    from layerctl.insight.waste import PathRow
    from layerctl.store.repo import Store

OWNERS = "owners"  # cache/owners/<layer id>-<code stamp>: {path: Package fields or None}


def row_owners(store: Store, target: Target,
               rows: Iterable[PathRow]) -> tuple[dict[bytes, Package], list[str]]:
    """(path -> the package that installed the row's last wasted copy, read from the
    package database of the layer that shipped it; the readers' warnings).

    The owner of a path in a layer is a fact about that layer, kept per layer id (and
    the code stamp of the package readers) as each path is asked, so a second run
    reads no package database. Nothing is kept once a database warned (a database
    shared by several layers warns once), so the warning shows at every run."""
    from layerctl.store import cache

    wanted: dict[int, list[bytes]] = {}
    for row in rows:
        if row.files or not row.copies or row.wasted == 0:
            continue
        step = row.copies[-1].step
        if step < len(target.layers):  # a container's pending copy: no database to ask
            wanted.setdefault(step, []).append(row.path)
    out: dict[bytes, Package] = {}
    made: dict[tuple, Package] = {}
    warnings: list[str] = []
    pkgs = None
    stamp = _owners_stamp()
    for step, paths in wanted.items():
        layer = target.layers[step]
        key = f"{layer.id}-{stamp}"
        kept = cache.load(store, OWNERS, key)
        known = {p: f for p, f in kept.items() if f is None or _is_fields(f)} \
            if isinstance(kept, dict) else {}
        missing = [p for p in paths if p not in known]
        if missing:
            if pkgs is None:
                from layerctl.insight.packages import Packages

                pkgs = Packages(store)
            tree = pkgs.tree(layer.root, layer.id[:12])
            found = pkgs.owners(tree, missing)
            known = {**known, **{p: None if pkg is None else _pkg_fields(pkg)
                                 for p, pkg in found.items()}}
            if not pkgs.warnings:
                cache.save(store, OWNERS, key, known)
                if not kept:
                    cache.drop_others(store, OWNERS, layer.id + "-", key)
        for p in paths:
            fields = known.get(p)
            if fields is not None:
                pkg = made.get(fields)
                if pkg is None:
                    pkg = made[fields] = _package(fields)
                out[p] = pkg  # one object per package: many rows share one
    if pkgs is not None:
        warnings = list(pkgs.warnings)
    return out, warnings


def _owners_stamp() -> str:
    from layerctl.store import cache

    return cache.code_stamp("layerctl.insight.owners", "layerctl.insight.packages",
                            "layerctl.insight.pkgdb")


def _pkg_fields(pkg: Package) -> tuple[str, str, str, str, str]:
    return (pkg.kind, pkg.key, pkg.name, pkg.version, pkg.arch)


def _is_fields(fields: object) -> bool:
    return (isinstance(fields, tuple) and len(fields) == 5
            and all(isinstance(f, str) for f in fields))


def _package(fields: tuple) -> Package:
    from layerctl.insight.pkgdb import Package

    return Package(*fields)
