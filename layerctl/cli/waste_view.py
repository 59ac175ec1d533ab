"""The body of `waste` (alias `efficiency`): wasted space per path, class and layer,
and a dive-compatible CI gate, free of click: cli/insight.py parses the options and
calls show_waste, and cli/entry.py calls it directly for `layerctl waste TARGET`."""

from __future__ import annotations

import gc
import json
import os
import sys
from typing import TYPE_CHECKING

from layerctl.cli.out import echo, echo_warnings
from layerctl.words import path_text

if TYPE_CHECKING:
    from layerctl.store.repo import Store


def _wasted_by(report: object, index: int) -> str:
    facts = report.layers[index]
    return f"{index} {facts.summary}".strip()


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _analysis_block(report: object) -> list[str]:
    from layerctl.words import humanize_bytes

    base = report.layers[report.base_index]
    return [
        "Analyzing image...",
        f"  efficiency: {report.efficiency * 100:2.4f} %",
        f"  wastedBytes: {report.reclaimable} bytes ({humanize_bytes(report.reclaimable)})"
        "      reclaimable; the visible copy of each path is kept",
        f"  userWastedPercent: {_go_percent(report.user_ratio)} %"
        f"               base: {report.base_name} (layers 0-{base.index})",
        f"  totalBytes: {report.total} bytes ({humanize_bytes(report.total)})"
        f"  visibleBytes: {report.visible} bytes ({humanize_bytes(report.visible)})",
        f"  userBytes: {report.user_bytes}  userReclaimable: {report.user_reclaimable}"
        f"  baseReclaimable: {report.base_reclaimable}",
    ]


def _row_owners(store: Store, tgt: object, rows: list) -> dict:
    """path -> the package that installed the row's last wasted copy (insight.owners.row_owners),
    when one says so; the package readers' warnings on stderr."""
    from layerctl.insight.owners import row_owners

    owners, warnings = row_owners(store, tgt, rows)
    echo_warnings(warnings)
    return owners


def _path_rows(report: object, show_all: bool, owners_of: object) -> list[str]:
    from layerctl.words import humanize_bytes

    rows = [row for row in report.by_path(collapse=not show_all)
            if row.wasted or show_all]
    owners = owners_of(rows)
    pkg_col = f"{'Package':<24}  " if owners else ""
    lines = ["Inefficient Files:",
             f"{'Count':>5}  {'Wasted Space':>12}  {'Class':<19}  {'Wasted by layer':<40}  "
             f"{pkg_col}File Path"]
    for row in rows:
        shown = path_text(row.path)
        if row.files:
            shown += f"/ (dir, {row.files} files)"
        pkg = ""
        if owners:
            owner = owners.get(row.path)
            pkg = f"{_clip(owner.label if owner else '-', 24):<24}  "
        lines.append(f"{row.count:>5}  {humanize_bytes(row.wasted):>12}  {row.cls:<19}  "
                     f"{_clip(_wasted_by(report, row.culprit), 40):<40}  {pkg}{shown}")
    return lines


def _layer_rows(report: object, show_all: bool, _owners_of: object = None) -> list[str]:
    from layerctl.words import humanize_bytes

    lines = ["Wasted by layer:",
             f"{'Layer':>5}  {'Wasted Space':>12}  {'Shipped':>10}  {'Id':<13} Classes / Summary"]
    wasted = {facts.index: (n, classes) for facts, n, classes in report.by_layer()}
    for facts in report.layers:
        n, classes = wasted.get(facts.index, (0, {}))
        if n == 0 and not show_all:
            continue
        detail = ", ".join(f"{c} {humanize_bytes(b)}" for c, b in classes.items())
        lines.append(f"{facts.index:>5}  {humanize_bytes(n):>12}  "
                     f"{humanize_bytes(facts.shipped):>10}  {facts.label:<13} "
                     f"{detail + ' / ' if detail else ''}{facts.summary}")
    return lines


def _class_rows(report: object, show_all: bool, _owners_of: object = None) -> list[str]:
    from layerctl.words import humanize_bytes

    lines = ["Wasted by class:", f"{'Class':<19}  {'Copies':>6}  {'Wasted Space':>12}"]
    for cls, n, copies in report.by_class():
        if n == 0 and not show_all:
            continue
        lines.append(f"{cls:<19}  {copies:>6}  {humanize_bytes(n):>12}")
    return lines


def _duplicate_rows(report: object, show_all: bool) -> list[str]:
    from layerctl.words import humanize_bytes

    dups = report.duplicates if show_all else report.duplicates[:10]
    if not dups:
        return []
    lines = ["Duplicate content (informational, not reclaimable by rebuilding):"]
    for _blob, size, paths in dups:
        shown = ", ".join(path_text(p) for p in paths[:4]) + (" …" if len(paths) > 4 else "")
        lines.append(f"  {humanize_bytes((len(paths) - 1) * size):>10}  {len(paths)} x "
                     f"{humanize_bytes(size)}: {shown}")
    return lines


def _report_json(report: object, outcomes: list | None, duplicates: bool,
                 owners_of: object) -> dict:
    layers = report.layers
    rows = []
    by_path = report.by_path()
    owners = owners_of(by_path)
    for row in by_path:
        owner = owners.get(row.path)
        rows.append({
            "package": None if owner is None else {
                "format": owner.kind, "name": owner.key, "version": owner.version,
                "arch": owner.arch},
            "count": row.count,
            "sizeBytes": row.wasted,
            "file": path_text(row.path),
            "class": row.cls,
            "wastedBy": layers[row.culprit].id,
            "wastedBytes": row.wasted,
            "copies": [{"layer": layers[w.step].id, "sizeBytes": w.size, "class": w.cls,
                        "wastedBy": layers[w.culprit].id, "how": w.how} for w in row.copies],
        })
    ratio = report.user_ratio
    out = {
        "layer": [{"index": f.index, "id": f.id, "digestId": f.id, "sizeBytes": f.shipped,
                   "command": f.created_by, "summary": f.summary} for f in layers],
        "image": {
            "sizeBytes": report.total,
            "inefficientBytes": report.reclaimable,
            "efficiencyScore": report.efficiency,
            "userWastedPercent": ratio if ratio != float("inf") else None,
            "totalBytes": report.total,
            "visibleBytes": report.visible,
            "reclaimableBytes": report.reclaimable,
            "userBytes": report.user_bytes,
            "userReclaimableBytes": report.user_reclaimable,
            "baseReclaimableBytes": report.base_reclaimable,
            "base": {"name": report.base_name, "index": report.base_index,
                     "id": layers[report.base_index].id},
            "classes": {cls: {"bytes": n, "copies": c} for cls, n, c in report.by_class()},
            "byLayer": [{"layer": f.id, "index": f.index, "wastedBytes": n, "classes": c}
                        for f, n, c in report.by_layer()],
            "fileReference": rows,
        },
    }
    if duplicates:
        out["duplicates"] = [{"sizeBytes": size, "wastedBytes": (len(paths) - 1) * size,
                              "paths": [path_text(p) for p in paths]}
                             for _b, size, paths in report.duplicates]
    if outcomes is not None:
        out["ci"] = [{"status": o.status, "rule": o.rule, "message": o.message}
                     for o in outcomes]
    return out


def _dive_lines(fig: object) -> list[str]:
    from layerctl.words import humanize_bytes

    lines = [
        "Analyzing image...",
        f"  efficiency: {fig.efficiency * 100:2.4f} %",
        f"  wastedBytes: {fig.wasted_bytes} bytes ({humanize_bytes(fig.wasted_bytes)})",
        f"  userWastedPercent: {_go_percent(fig.user_ratio)} %",
        "Inefficient Files:",
        "Count  Wasted Space  File Path",
    ]
    for count, cum, path in fig.rows:
        lines.append(f"{count:>5}  {humanize_bytes(cum):>12}  {path_text(path)}")
    return lines


def _go_percent(ratio: float) -> str:
    if ratio != ratio:
        return "NaN"
    if ratio == float("inf"):
        return "+Inf"
    return f"{ratio * 100:2.4f}"


def _dive_json(fig: object) -> dict:
    return {"image": {
        "sizeBytes": fig.size,
        "userSizeBytes": fig.user_size,
        "inefficientBytes": fig.wasted_bytes,
        "efficiencyScore": fig.efficiency,
        "userWastedPercent": fig.user_ratio if fig.user_ratio == fig.user_ratio
        and fig.user_ratio != float("inf") else None,
        "fileReference": [{"count": n, "sizeBytes": cum, "file": path_text(p)}
                          for n, cum, p in fig.rows],
    }}


def show_waste(store: Store, target: str, base_ref: str | None = None, as_json: bool = False,
               by: str = "path", show_all: bool = False, duplicates: bool = False,
               ci: bool = False, ci_config: str | None = None,
               dive_compat: str | None = None) -> None:
    """Wasted space in IMAGE|CONTAINER `target`: bytes the layers ship that the final
    filesystem does not show, per path, class and culprit layer.

    The cyclic garbage collector is paused meanwhile: an analysis allocates ~100k
    objects (trees, records, changes) that live to its end and form no cycles, and
    the collector's passes over them were ~8% of a first analysis. Memory is freed by
    reference counting as before; the collector resumes for a caller that goes on."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        _show_waste(store, target, base_ref, as_json, by, show_all, duplicates, ci, ci_config,
                    dive_compat)
    finally:
        if enabled:
            gc.enable()


def _show_waste(store: Store, target: str, base_ref: str | None, as_json: bool, by: str,
                show_all: bool, duplicates: bool, ci: bool, ci_config: str | None,
                dive_compat: str | None) -> None:
    from layerctl.insight.history import resolve_target

    gate = ci or os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")
    cfg = None
    if gate:  # imported only when used: start-up time is most of a run
        from layerctl.insight import diveci

        cfg = diveci.load_config(ci_config)
    tgt = resolve_target(store, target)
    lines: list[str] = []
    if gate:
        lines.append("  Using default CI config" if not cfg.source
                     else f"  Using CI config: {cfg.source}")
        lines.append(f"Image Source: layerctl://{tgt.name}")
    if dive_compat is not None:
        from layerctl.insight.divecompat import dive_figures
        from layerctl.insight.history import steps

        fig = dive_figures(store, list(steps(store, tgt)), dive_compat)
        outcomes = diveci.evaluate(cfg, diveci.Figures(
            fig.efficiency, fig.wasted_bytes, fig.user_ratio), own_rules=False) if gate else None
        if as_json:
            data = _dive_json(fig)
            if outcomes is not None:
                data["ci"] = [{"status": o.status, "rule": o.rule, "message": o.message}
                              for o in outcomes]
            echo(json.dumps(data, indent=2))
        else:
            lines.extend(_dive_lines(fig))
            _finish(lines, outcomes)
        _exit(outcomes)
        return
    from layerctl.insight.waste import METADATA_ONLY, analyze, base_of

    base_index, base_name = base_of(store, tgt, base_ref or (cfg.base if cfg else None))
    report = analyze(store, tgt, base_index, base_name, duplicates)
    judged = report
    outcomes = None
    if gate:
        ignored = cfg.ignored()
        judged = report.without(ignored) if ignored else report
        meta_layers: dict[int, int] = {}
        for w in judged.wasted:
            if w.cls == METADATA_ONLY and w.culprit > judged.base_index and w.size:
                meta_layers[w.culprit] = meta_layers.get(w.culprit, 0) + w.size
        outcomes = diveci.evaluate(cfg, diveci.Figures(
            judged.efficiency, judged.reclaimable, judged.user_ratio, judged.reclaimable,
            judged.user_reclaimable,
            [(_wasted_by(judged, i), n) for i, n in sorted(meta_layers.items())]))
    def owners_of(rows: list) -> dict:
        return _row_owners(store, tgt, rows)

    if as_json:
        echo(json.dumps(_report_json(judged, outcomes, duplicates, owners_of), indent=2))
        _exit(outcomes)
        return
    lines.extend(_analysis_block(judged))
    render = {"path": _path_rows, "layer": _layer_rows, "class": _class_rows}[by]
    lines.extend(render(judged, show_all, owners_of))
    if not gate:
        lines.extend(_duplicate_rows(judged, show_all))
    _finish(lines, outcomes)
    _exit(outcomes)


def _finish(lines: list[str], outcomes: list | None) -> None:
    if outcomes is not None:
        from layerctl.insight.diveci import result_line

        lines.append("Results:")
        lines.extend(o.line() for o in outcomes)
        lines.append(result_line(outcomes))
    echo("\n".join(lines))


def _exit(outcomes: list | None) -> None:
    if outcomes is None:
        return
    from layerctl.insight.diveci import failed

    if failed(outcomes):
        sys.stdout.flush()
        sys.exit(1)
