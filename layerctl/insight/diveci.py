"""The CI gate: dive's `.dive-ci` read unchanged (camelCase keys under `rules:`, dive's
defaults, its "disabled" words and its strict comparisons), plus layerctl's own keys
under a `layerctl:` section that dive ignores. Rules are evaluated on any figures
(layerctl's corrected ones or dive's own), and printed with dive's wording."""

from __future__ import annotations

import fnmatch
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from layerctl.errors import LayerctlError

DEFAULT_PATH = ".dive-ci"
DISABLED_WORDS = ("", "disabled", "off", "false")
POLICIES = ("off", "warn", "fail")


class CiMisconfigured(LayerctlError):
    """The CI configuration cannot be used (dive: "CI Misconfigured")."""

    exit_code = 2


@dataclass
class CiConfig:
    source: str = ""  # the file read; empty: dive's defaults
    lowest_efficiency: float | None = 0.9
    highest_wasted_bytes: int | None = None
    highest_user_wasted_percent: float | None = 0.1
    # layerctl: section
    minimum_wasted_bytes: int | None = None
    ignore_paths: list[str] = field(default_factory=list)
    metadata_only: str = "off"
    base: str | None = None

    def ignored(self) -> Callable[[bytes], bool] | None:
        if not self.ignore_paths:
            return None
        patterns = [_glob_regex(p) for p in self.ignore_paths]
        return lambda path: any(r.match(path) for r in patterns)


# -- values, as dive parses them ---------------------------------------------------

_BYTE_UNITS = {"": 1, "b": 1}
for _i, _si in enumerate("kmgtpe", start=1):
    _BYTE_UNITS[_si] = _BYTE_UNITS[_si + "b"] = 1000**_i
    _BYTE_UNITS[_si + "i"] = _BYTE_UNITS[_si + "ib"] = 1024**_i


def parse_bytes(text: str) -> int:
    """go-humanize ParseBytes: '20MB' = 20*10^6, '1.5 MiB', '1,000kb'; case-insensitive."""
    m = re.match(r"[0-9.,]*", text)
    number = m.group().replace(",", "")
    unit = text[m.end():].strip().lower()
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"not a byte size: {text!r}") from None
    if unit not in _BYTE_UNITS:
        raise ValueError(f"unhandled size name: {unit}")
    value *= _BYTE_UNITS[unit]
    if value >= 2.0**64:
        raise ValueError(f"too large: {text!r}")
    return int(value)


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):  # YAML 1.1 reads off/no/false as booleans
        return "true" if value else "false"
    return str(value)


def _disabled(text: str) -> bool:
    return text.strip().lower() in DISABLED_WORDS


def _ratio(key: str, value: object) -> float | None:
    text = _text(value)
    if _disabled(text):
        return None
    try:
        ratio = float(text)
    except ValueError:
        raise CiMisconfigured(f"{key}: invalid value {text!r}: want a ratio 0-1 or "
                              "'disabled'") from None
    if not 0 <= ratio <= 1:
        raise CiMisconfigured(f"{key} config value is outside allowed range (0-1), "
                              f"given '{text}'")
    return ratio


def _bytes(key: str, value: object) -> int | None:
    text = _text(value)
    if _disabled(text):
        return None
    try:
        return parse_bytes(text.strip())
    except ValueError as e:
        raise CiMisconfigured(f"{key}: invalid value {text!r}: {e}") from None


def _glob_regex(pattern: str) -> re.Pattern[bytes]:
    """gitignore-style: '/a/*.so' anchored at the root, 'name' matches at any depth,
    '**' crosses directories, a match on a directory covers everything below it."""
    anchored = pattern.startswith("/") or "/" in pattern.rstrip("/")
    body = pattern.strip("/")
    out = []
    i = 0
    while i < len(body):
        if body.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif body.startswith("**", i):
            out.append(".*")
            i += 2
        else:
            piece = fnmatch.translate(body[i])[4:-3]  # one char: '*'->'.*', '?'->'.'
            out.append({".*": "[^/]*", ".": "[^/]"}.get(piece, piece))
            i += 1
    prefix = "" if anchored else "(?:.*/)?"
    return re.compile(os.fsencode(f"^{prefix}{''.join(out)}(?:/.*)?$"), re.S)


# -- loading ---------------------------------------------------------------------------


def load_config(path: str | None) -> CiConfig:
    """`path` (or ./.dive-ci when it exists; else dive's defaults)."""
    explicit = path is not None
    path = path or DEFAULT_PATH
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        if explicit:
            raise CiMisconfigured(f"CI config {path}: no such file") from None
        return CiConfig()
    except OSError as e:
        raise CiMisconfigured(f"CI config {path}: {e.strerror}") from None
    import yaml

    try:
        doc = yaml.safe_load(data)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise CiMisconfigured(f"CI config {path}: not valid YAML{where}") from None
    doc = {} if doc is None else doc
    if not isinstance(doc, dict):
        raise CiMisconfigured(f"CI config {path}: expected a mapping at the top level")
    rules = doc.get("rules") or {}
    own = doc.get("layerctl") or {}
    for key, value in (("rules", rules), ("layerctl", own)):
        if not isinstance(value, dict):
            raise CiMisconfigured(f"CI config {path}: '{key}' must be a mapping")
    cfg = CiConfig(source=path)
    if "lowestEfficiency" in rules:
        cfg.lowest_efficiency = _ratio("lowestEfficiency", rules["lowestEfficiency"])
    if "highestWastedBytes" in rules:
        cfg.highest_wasted_bytes = _bytes("highestWastedBytes", rules["highestWastedBytes"])
    if "highestUserWastedPercent" in rules:
        cfg.highest_user_wasted_percent = _ratio("highestUserWastedPercent",
                                                 rules["highestUserWastedPercent"])
    _load_own(cfg, own, path)
    return cfg


_OWN_KEYS = ("minimumWastedBytes", "ignorePaths", "metadataOnlyRewrites", "base")


def _load_own(cfg: CiConfig, own: dict, path: str) -> None:
    unknown = sorted(set(map(str, own)) - set(_OWN_KEYS))
    if unknown:
        raise CiMisconfigured(f"CI config {path}: unknown key layerctl.{unknown[0]} "
                              f"(known: {', '.join(_OWN_KEYS)})")
    if "minimumWastedBytes" in own:
        cfg.minimum_wasted_bytes = _bytes("minimumWastedBytes", own["minimumWastedBytes"])
    ignores = own.get("ignorePaths") or []
    if isinstance(ignores, str):
        ignores = [ignores]
    if not isinstance(ignores, list) or not all(isinstance(p, str) and p for p in ignores):
        raise CiMisconfigured(f"CI config {path}: layerctl.ignorePaths must be a list of globs")
    cfg.ignore_paths = ignores
    policy = _text(own.get("metadataOnlyRewrites", "off")).strip().lower()
    if policy == "false":
        policy = "off"
    if policy not in POLICIES:
        raise CiMisconfigured(f"CI config {path}: layerctl.metadataOnlyRewrites must be one "
                              f"of {', '.join(POLICIES)}, given '{policy}'")
    cfg.metadata_only = policy
    base = own.get("base")
    cfg.base = _text(base).strip() or None


# -- evaluation ------------------------------------------------------------------------


@dataclass
class Figures:
    """What the rules look at."""

    efficiency: float
    wasted_bytes: int
    user_ratio: float
    reclaimable: int = 0  # for the minimumWastedBytes floor
    user_reclaimable: int = 0
    metadata_only: list[tuple[str, int]] = field(default_factory=list)  # (layer, bytes)


@dataclass
class Outcome:
    status: str  # PASS FAIL WARN SKIP
    rule: str
    message: str = ""

    def line(self) -> str:
        return f"  {self.status}: {self.rule}" + (f": {self.message}" if self.message else "")


def go_float(x: float) -> str:
    """Go's %v of a float64: shortest repr, no trailing '.0'."""
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    if math.isnan(x):
        return "NaN"
    text = repr(x)
    return text[:-2] if text.endswith(".0") else text


def evaluate(cfg: CiConfig, fig: Figures, own_rules: bool = True) -> list[Outcome]:
    """dive's three rules in dive's order, then layerctl's (with `own_rules`)."""
    out = []
    floor = cfg.minimum_wasted_bytes if own_rules else None

    t = cfg.highest_user_wasted_percent
    if t is None:
        out.append(Outcome("SKIP", "highestUserWastedPercent", "rule disabled"))
    elif fig.user_ratio > t and (floor is None or fig.user_reclaimable >= floor):
        out.append(Outcome("FAIL", "highestUserWastedPercent",
                           "too many bytes wasted, relative to the user bytes added "
                           f"(%-user-wasted-bytes={go_float(fig.user_ratio)} > "
                           f"threshold={go_float(t)})"))
    else:
        out.append(_pass("highestUserWastedPercent", fig.user_ratio > t, floor))

    b = cfg.highest_wasted_bytes
    if b is None:
        out.append(Outcome("SKIP", "highestWastedBytes", "rule disabled"))
    elif fig.wasted_bytes > b:
        out.append(Outcome("FAIL", "highestWastedBytes",
                           f"too many bytes wasted (wasted-bytes={fig.wasted_bytes} > "
                           f"threshold={b})"))
    else:
        out.append(Outcome("PASS", "highestWastedBytes"))

    e = cfg.lowest_efficiency
    if e is None:
        out.append(Outcome("SKIP", "lowestEfficiency", "rule disabled"))
    elif e > fig.efficiency and (floor is None or fig.reclaimable >= floor):
        out.append(Outcome("FAIL", "lowestEfficiency",
                           f"image efficiency is too low (efficiency={go_float(fig.efficiency)}"
                           f" < threshold={go_float(e)})"))
    else:
        out.append(_pass("lowestEfficiency", e > fig.efficiency, floor))

    if own_rules and cfg.metadata_only != "off":
        total = sum(n for _layer, n in fig.metadata_only)
        if total == 0:
            out.append(Outcome("PASS", "metadataOnlyRewrites"))
        else:
            layers = ", ".join(layer for layer, _n in fig.metadata_only)
            out.append(Outcome("WARN" if cfg.metadata_only == "warn" else "FAIL",
                               "metadataOnlyRewrites",
                               f"{total} bytes rewritten with unchanged content by layer "
                               f"{layers} (use COPY --chown / chown in the creating RUN)"))
    return out


def _pass(rule: str, over: bool, floor: int | None) -> Outcome:
    if over and floor is not None:
        return Outcome("PASS", rule, f"below minimumWastedBytes={floor}")
    return Outcome("PASS", rule)


def result_line(outcomes: list[Outcome]) -> str:
    counts = {s: sum(o.status == s for o in outcomes) for s in ("PASS", "FAIL", "WARN", "SKIP")}
    verdict = "FAIL" if counts["FAIL"] else "PASS"
    return (f"Result:{verdict} [Total:{len(outcomes)}] [Passed:{counts['PASS']}] "
            f"[Failed:{counts['FAIL']}] [Warn:{counts['WARN']}] [Skipped:{counts['SKIP']}]")


def failed(outcomes: list[Outcome]) -> bool:
    return any(o.status == "FAIL" for o in outcomes)
