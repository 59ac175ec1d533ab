"""Version ordering of the three package formats layerctl reads: dpkg (deb-version(7)),
RPM (rpmvercmp) and apk. Each returns <0, 0 or >0 like a C comparator."""

from __future__ import annotations

import re


def _sign(n: int) -> int:
    return (n > 0) - (n < 0)


# -- dpkg ---------------------------------------------------------------------------


def _order(c: str) -> int:
    """dpkg's weight of one character of a non-digit run: '~' sorts before the end of
    the string, letters before everything else."""
    if not c or c.isdigit():
        return 0
    if c.isascii() and c.isalpha():
        return ord(c)
    if c == "~":
        return -1
    return ord(c) + 256


def _verrevcmp(a: str, b: str) -> int:
    i = j = 0
    while i < len(a) or j < len(b):
        first_diff = 0
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ac = _order(a[i] if i < len(a) else "")
            bc = _order(b[j] if j < len(b) else "")
            if ac != bc:
                return ac - bc
            i += 1
            j += 1
        while i < len(a) and a[i] == "0":
            i += 1
        while j < len(b) and b[j] == "0":
            j += 1
        while i < len(a) and a[i].isdigit() and j < len(b) and b[j].isdigit():
            if not first_diff:
                first_diff = ord(a[i]) - ord(b[j])
            i += 1
            j += 1
        if i < len(a) and a[i].isdigit():
            return 1
        if j < len(b) and b[j].isdigit():
            return -1
        if first_diff:
            return first_diff
    return 0


def _deb_split(v: str) -> tuple[int, str, str]:
    v = v.strip()
    epoch = 0
    if ":" in v:
        head, v = v.split(":", 1)
        epoch = int(head) if head.isdigit() else 0
    upstream, sep, revision = v.rpartition("-")
    if not sep:
        upstream, revision = v, ""
    return epoch, upstream, revision


def deb_compare(a: str, b: str) -> int:
    """dpkg --compare-versions: epoch numerically, then upstream, then revision."""
    ea, ua, ra = _deb_split(a)
    eb, ub, rb = _deb_split(b)
    if ea != eb:
        return _sign(ea - eb)
    return _sign(_verrevcmp(ua, ub)) or _sign(_verrevcmp(ra, rb))


# -- rpm ----------------------------------------------------------------------------

_RPM_SEP = re.compile(r"[^A-Za-z0-9~^]+")


def rpmvercmp(a: str, b: str) -> int:
    """RPM's segment comparison: digit runs numerically, alpha runs as strings, a
    digit run newer than an alpha run, '~' older and '^' newer than the end."""
    if a == b:
        return 0
    i = j = 0
    while i < len(a) or j < len(b):
        m = _RPM_SEP.match(a, i)
        i = m.end() if m else i
        m = _RPM_SEP.match(b, j)
        j = m.end() if m else j
        ca, cb = a[i : i + 1], b[j : j + 1]
        if ca == "~" or cb == "~":
            if ca != "~":
                return 1
            if cb != "~":
                return -1
            i, j = i + 1, j + 1
            continue
        if ca == "^" or cb == "^":
            if not ca:
                return -1
            if not cb:
                return 1
            if ca != "^":
                return 1
            if cb != "^":
                return -1
            i, j = i + 1, j + 1
            continue
        if not (ca and cb):
            break
        pattern = r"[0-9]+" if ca.isdigit() else r"[A-Za-z]+"
        seg_a = re.compile(pattern).match(a, i)
        seg_b = re.compile(pattern).match(b, j)
        if seg_b is None:  # a digit run is newer than an alpha run
            return 1 if ca.isdigit() else -1
        sa, sb = seg_a.group(), seg_b.group()
        i, j = seg_a.end(), seg_b.end()
        if ca.isdigit():
            sa, sb = sa.lstrip("0"), sb.lstrip("0")
            if len(sa) != len(sb):
                return _sign(len(sa) - len(sb))
        if sa != sb:
            return -1 if sa < sb else 1
    if i >= len(a) and j >= len(b):
        return 0
    return -1 if i >= len(a) else 1


def _evr(v: str) -> tuple[int, str, str]:
    epoch = 0
    if ":" in v:
        head, v = v.split(":", 1)
        epoch = int(head) if head.isdigit() else 0
    version, sep, release = v.rpartition("-")
    return (epoch, version, release) if sep else (epoch, v, "")


def rpm_compare(a: str, b: str) -> int:
    """Compare two '[E:]V-R' strings as rpm does (a missing epoch is 0)."""
    ea, va, ra = _evr(a)
    eb, vb, rb = _evr(b)
    if ea != eb:
        return _sign(ea - eb)
    return rpmvercmp(va, vb) or rpmvercmp(ra, rb)


# -- apk ----------------------------------------------------------------------------

# Suffix ranks: pre-releases sort before the bare version, post-releases after it.
_APK_SUFFIX = {"alpha": 0, "beta": 1, "pre": 2, "rc": 3, "": 4, "cvs": 5, "svn": 6,
               "git": 7, "hg": 8, "p": 9}
_APK = re.compile(r"^(\d+(?:\.\d+)*)([a-z]?)((?:_[a-z]+\d*)*)(?:-r(\d+))?$")


def _apk_key(v: str) -> tuple | None:
    m = _APK.match(v)
    if m is None:
        return None
    numbers = tuple(int(x) for x in m.group(1).split("."))
    suffixes = []
    for part in m.group(3).split("_")[1:]:
        word = part.rstrip("0123456789")
        if word not in _APK_SUFFIX:
            return None
        suffixes.append((_APK_SUFFIX[word], int(part[len(word):] or 0)))
    suffixes.append((_APK_SUFFIX[""], 0))  # the end sorts between pre and post releases
    return numbers, m.group(2), tuple(suffixes), int(m.group(4) or 0)


def apk_compare(a: str, b: str) -> int:
    """apk's order for `1.2.3[letter][_suffixN...][-rN]`; versions outside that grammar
    fall back to rpm's segment comparison."""
    ka, kb = _apk_key(a), _apk_key(b)
    if ka is None or kb is None:
        return rpmvercmp(a, b)
    (na, la, sa, ra), (nb, lb, sb, rb) = ka, kb
    for x, y in zip(na, nb, strict=False):
        if x != y:
            return _sign(x - y)
    if len(na) != len(nb):
        return _sign(len(na) - len(nb))
    if la != lb:
        return -1 if la < lb else 1
    if sa != sb:
        return -1 if sa < sb else 1
    return _sign(ra - rb)


COMPARE = {"deb": deb_compare, "rpm": rpm_compare, "apk": apk_compare}
