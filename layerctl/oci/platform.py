"""Which image of a multi-platform index is for us: one rule for `pull` (any platform,
`--platform os/arch[/variant]`) and `load` of an OCI layout (this machine's)."""

from __future__ import annotations

from collections.abc import Sequence

from layerctl.errors import BadInput
from layerctl.images import host_arch

Platform = tuple[str, str, str]  # os, architecture, variant ("": any)


def parse_platform(text: str | None) -> Platform:
    """'os/arch[/variant]' -> (os, arch, variant); None -> this host's platform."""
    if not text:
        arch = host_arch()
        return "linux", arch, {"arm": "v7", "arm64": "v8"}.get(arch, "")
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise BadInput(f"invalid platform {text!r}: expected os/arch[/variant]")
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(parts[1], parts[1])
    variant = parts[2] if len(parts) == 3 else ""
    return parts[0], arch, variant


def platform_text(p: dict) -> str:
    return "/".join(x for x in (p.get("os", ""), p.get("architecture", ""), p.get("variant"))
                    if x)


def _rank(p: object, want: Platform) -> int | None:
    """0: the platform wanted, variant and all; 1: it, with no variant or an equivalent
    one (arm64's v8 and none); None: another platform (or none given)."""
    want_os, want_arch, want_variant = want
    if not isinstance(p, dict) or p.get("os") != want_os or p.get("architecture") != want_arch:
        return None
    variant = p.get("variant") or ""
    if want_variant and variant and variant != want_variant:
        if not (want_arch == "arm64" and {variant, want_variant} <= {"v8", ""}):
            return None
    return int(variant != want_variant)


def choose(platforms: Sequence[object], want: Platform, where: str) -> int:
    """The index (in `platforms`, the entries' platform objects) of the one for `want`:
    an exact variant first, then one without; BadInput listing what there is."""
    ranked = [(r, i) for i, p in enumerate(platforms) if (r := _rank(p, want)) is not None]
    if not ranked:
        offered = sorted({platform_text(p) for p in platforms
                          if isinstance(p, dict) and p.get("os") != "unknown"})
        wanted = "/".join(x for x in want if x)
        raise BadInput(f"{where}: no image for platform {wanted} "
                       f"(available: {', '.join(offered) or 'none'})")
    return min(ranked)[1]
