"""Package-aware diffs: dpkg, apk and rpm databases read from layer trees by `log --stat`,
`diff --packages`, `blame` and `waste`, on the real Debian corpus with apt-get-style
layers, a hand-written apk database and an rpmdb.sqlite built here."""

from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from layerctl.insight import packages, pkgdb
from layerctl.insight.pkgversion import apk_compare, deb_compare, rpm_compare, rpmvercmp
from layerctl.store.layers import read_layer
from layerctl.store.meta import DIR, Meta
from layerctl.store.repo import Store
from tests.layerhelpers import cli_env, commit_edit, import_dir
from tests.layerhelpers import put_file as _put_file
from tests.paths import REPO_ROOT

STATUS = b"var/lib/dpkg/status"
INFO = b"var/lib/dpkg/info"
LIBC_OLD, LIBC_NEW = "2.36-9+deb12u14", "2.36-9+deb12u99"
SED_OLD, SED_NEW = "4.9-1+deb12u1", "4.9-1"  # a downgrade
HELLO_1, HELLO_2 = "2.10-2", "2.10-3"
HELLO_BIN = b"usr/bin/hello"


def put_file(ed: object, w: object, path: bytes, data: bytes, mode: int = 0o644) -> None:
    """put_file, making missing parent directories first (as a package install does)."""
    parts = path.split(b"/")[:-1]
    for i in range(1, len(parts) + 1):
        sub = b"/".join(parts[:i])
        if ed.get(sub) is None:
            ed.set_dir(sub, Meta(DIR, 0o755, 0, 0, 1_700_000_000_000_000_000, 0))
    _put_file(ed, w, path, data, mode=mode)


def run(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = cli_env(root, REPO_ROOT)
    proc = subprocess.run([sys.executable, "-m", "layerctl", *args], capture_output=True,
                          text=True, env=env, stdin=subprocess.DEVNULL, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


# -- dpkg status editing, as apt-get leaves it --------------------------------------


def _stanzas(data: bytes) -> list[bytes]:
    return [s for s in data.split(b"\n\n") if s.strip()]


def _name(stanza: bytes) -> bytes:
    return stanza.split(b"\n", 1)[0].split(b": ", 1)[1]


def _set_version(stanza: bytes, version: str) -> bytes:
    lines = [b"Version: " + version.encode() if ln.startswith(b"Version: ") else ln
             for ln in stanza.split(b"\n")]
    return b"\n".join(lines)


def _status(stanzas: list[bytes]) -> bytes:
    return b"\n\n".join(s.strip(b"\n") for s in stanzas) + b"\n"


def _read(store: Store, ed: object, path: bytes) -> bytes:
    return store.read_blob(ed.get(path)[1])


def _hello_stanza(version: str) -> bytes:
    return (f"Package: hello\nStatus: install ok installed\nPriority: optional\n"
            f"Section: devel\nInstalled-Size: 120\nMaintainer: Test <t@example.com>\n"
            f"Architecture: amd64\nVersion: {version}\nDepends: libc6 (>= 2.34)\n"
            f"Description: example package\n the classic greeting\n").encode()


def _edit_status(store: Store, ed: object, writer: object, fn: object) -> None:
    stanzas = fn(_stanzas(_read(store, ed, STATUS)))
    put_file(ed, writer, STATUS, _status(stanzas))


@pytest.fixture(scope="module")
def deb(debian_rootfs: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Debian minbase, then: install hello; upgrade libc6 + remove hostname; upgrade
    hello (its binary rewritten) + downgrade sed; an unrelated layer."""
    root = tmp_path_factory.mktemp("pkgstore")
    store = Store(str(root))
    L = [import_dir(store, debian_rootfs, "deb:base")]

    def install_hello(ed: object, w: object) -> None:
        _edit_status(store, ed, w, lambda s: [*s, _hello_stanza(HELLO_1)])
        put_file(ed, w, INFO + b"/hello.list",
                 b"/.\n/usr\n/usr/bin\n/usr/bin/hello\n/usr/share/doc/hello/copyright\n")
        put_file(ed, w, HELLO_BIN, b"\x7fELF hello v1 " * 400, mode=0o755)
        put_file(ed, w, b"usr/share/doc/hello/copyright", b"GPL-3+\n")

    def libc_up_hostname_out(ed: object, w: object) -> None:
        def fn(stanzas: list[bytes]) -> list[bytes]:
            out = []
            for s in stanzas:
                if _name(s) == b"hostname":
                    continue
                out.append(_set_version(s, LIBC_NEW) if _name(s) == b"libc6" else s)
            return out

        _edit_status(store, ed, w, fn)
        for line in _read(store, ed, INFO + b"/hostname.list").split(b"\n"):
            path = b"usr" + line if line.startswith(b"/bin/") else line.lstrip(b"/")
            got = ed.get(path) if path else None
            if got is not None and got[0].kind == "-":  # files: /bin is a symlink here
                ed.delete(path)
        ed.delete(INFO + b"/hostname.list")
        ed.delete(INFO + b"/hostname.md5sums")

    def hello_up_sed_down(ed: object, w: object) -> None:
        def fn(stanzas: list[bytes]) -> list[bytes]:
            out = []
            for s in stanzas:
                if _name(s) == b"hello":
                    s = _set_version(s, HELLO_2)
                elif _name(s) == b"sed":
                    s = _set_version(s, SED_NEW)
                out.append(s)
            return out

        _edit_status(store, ed, w, fn)
        put_file(ed, w, HELLO_BIN, b"\x7fELF hello v2 " * 500, mode=0o755)

    def unrelated(ed: object, w: object) -> None:
        put_file(ed, w, b"etc/motd", b"welcome\n")

    for fn, msg in [(install_hello, "apt-get install hello"),
                    (libc_up_hostname_out, "apt-get upgrade libc6; apt-get purge hostname"),
                    (hello_up_sed_down, "apt-get install hello=2.10-3 sed=4.9-1"),
                    (unrelated, "motd")]:
        L.append(commit_edit(store, L[-1], fn, message=msg))
    store.close()
    yield {"root": root, "layers": L}
    shutil.rmtree(root, ignore_errors=True)


def _log_package_lines(root: Path, top: str) -> dict[str, str]:
    """layer id -> its `packages:` line in `log --stat` ('' when none)."""
    out = run(root, "log", "--stat", top).stdout
    lines: dict[str, str] = {}
    current = None
    for line in out.splitlines():
        if line.startswith("layer "):
            current = line.split()[1]
            lines[current] = ""
        elif line.strip().startswith("packages: "):
            lines[current] = line.strip()
    return lines


def test_log_stat_names_each_layers_packages(deb: dict) -> None:
    L = deb["layers"]
    lines = _log_package_lines(deb["root"], L[-1])
    assert lines[L[1]] == f"packages: +hello {HELLO_1}"
    assert lines[L[2]] == f"packages: ~libc6 {LIBC_OLD} -> {LIBC_NEW} -hostname"
    assert lines[L[3]] == (f"packages: ~hello {HELLO_1} -> {HELLO_2} "
                           f"~sed {SED_OLD} -> {SED_NEW} (downgrade)")
    assert lines[L[4]] == ""  # the database did not change
    # the imported base adds every installed package (88 in minbase): 20 named, then a count
    assert lines[L[0]].startswith("packages: +adduser ")
    assert lines[L[0]].endswith("(+68 more)")


def test_diff_packages_between_layers(deb: dict) -> None:
    L = deb["layers"]
    out = run(deb["root"], "diff", "--packages", L[0], L[-1]).stdout.splitlines()
    assert out == [f"+hello {HELLO_2}", f"~libc6 {LIBC_OLD} -> {LIBC_NEW}",
                   f"~sed {SED_OLD} -> {SED_NEW} (downgrade)", "-hostname"]
    data = json.loads(run(deb["root"], "diff", "--packages", "--json", L[2], L[3]).stdout)
    assert data == [
        {"op": "upgraded", "format": "deb", "package": "hello", "old": HELLO_1,
         "new": HELLO_2},
        {"op": "downgraded", "format": "deb", "package": "sed", "old": SED_OLD,
         "new": SED_NEW},
    ]
    assert run(deb["root"], "diff", "--packages", L[3], L[4]).stdout == ""


def test_blame_names_the_owning_package_per_event(deb: dict) -> None:
    L = deb["layers"]
    root = deb["root"]
    hello = json.loads(run(root, "blame", "--json", L[-1], "/usr/bin/hello").stdout)[0]
    got = [(e["change"], e["layer"], e["package"]) for e in hello["events"]]
    pkg = {"format": "deb", "name": "hello", "arch": "amd64"}
    assert got == [("A", L[1], {**pkg, "version": HELLO_1}),
                   ("M", L[3], {**pkg, "version": HELLO_2})]
    text = run(root, "blame", L[-1], "/usr/bin/hello").stdout
    assert f"[deb hello {HELLO_2}]" in text
    # /bin/hostname in dpkg's list, /usr/bin/hostname on disk (merged /usr)
    host = json.loads(run(root, "blame", "--json", L[-1], "/usr/bin/hostname").stdout)[0]
    got = [(e["change"], e["layer"], e["package"] and e["package"]["name"],
            e["package"] and e["package"]["version"]) for e in host["events"]]
    assert got == [("A", L[0], "hostname", "3.23+nmu1"), ("D", L[2], "hostname", "3.23+nmu1")]
    # libc6 is Multi-Arch: same: its list is libc6:amd64.list
    libc = json.loads(run(root, "blame", "--json", L[2], "/usr/lib/x86_64-linux-gnu/libc.so.6"
                          ).stdout)[0]
    assert libc["events"][0]["package"]["name"] == "libc6"
    assert libc["events"][0]["package"]["version"] == LIBC_OLD


def test_waste_rows_name_the_package_that_shipped_the_bytes(deb: dict) -> None:
    L = deb["layers"]
    root = deb["root"]
    data = json.loads(run(root, "waste", "--json", L[-1], "--base", L[0]).stdout)
    rows = {r["file"]: r for r in data["image"]["fileReference"]}
    hello = rows["/usr/bin/hello"]
    assert hello["sizeBytes"] == len(b"\x7fELF hello v1 " * 400)
    assert hello["package"] == {"format": "deb", "name": "hello", "version": HELLO_1,
                                "arch": "amd64"}
    assert rows["/usr/bin/hostname"]["package"]["name"] == "hostname"
    assert rows["/var/lib/dpkg/status"]["package"] is None
    text = run(root, "waste", L[-1], "--base", L[0]).stdout
    header = next(ln for ln in text.splitlines() if "File Path" in ln)
    assert "Package" in header
    row = next(ln for ln in text.splitlines() if ln.endswith(" /usr/bin/hello"))
    assert f"hello {HELLO_1}" in row


def test_unchanged_database_is_not_read(deb: dict) -> None:
    """Cost follows changes: trees whose status blob is the same are not parsed."""
    L = deb["layers"]
    store = Store(str(deb["root"]))
    try:
        pkgs = packages.Packages(store)
        a, b = (pkgs.tree(read_layer(store, x).root, x[:12]) for x in (L[3], L[4]))
        assert pkgs.changes(a, b) == []
        assert pkgs._dbs == {}
        c = pkgs.tree(read_layer(store, L[2]).root, "l2")
        assert [ch.text() for ch in pkgs.changes(c, a)][0].startswith("~hello")
        assert len(pkgs._dbs) == 2
    finally:
        store.close()


# -- apk and rpm, on small hand-built images ------------------------------------------


APK_V1 = b"""C:Q1abc=
P:musl
V:1.2.4-r1
A:x86_64
F:lib
R:ld-musl-x86_64.so.1

P:busybox
V:1.36.1-r2
A:x86_64
F:bin
R:busybox
"""
APK_V2 = b"""P:musl
V:1.2.4-r2
A:x86_64
F:lib
R:ld-musl-x86_64.so.1

P:curl
V:8.5.0-r0
A:x86_64
F:usr/bin
R:curl
F:usr/share/doc/curl
R:README
"""


def _small_base(store: Store, tmp_path: Path) -> str:
    src = tmp_path / "src"
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "os-release").write_text("ID=test\n")
    return import_dir(store, src, "small:base")


def test_apk_database(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = Store(str(root))
    base = _small_base(store, tmp_path)
    one = commit_edit(store, base, lambda ed, w: put_file(ed, w, b"lib/apk/db/installed",
                                                           APK_V1))

    def two_fn(ed: object, w: object) -> None:
        put_file(ed, w, b"lib/apk/db/installed", APK_V2)
        put_file(ed, w, b"usr/bin/curl", b"curl binary")

    two = commit_edit(store, one, two_fn)
    store.close()
    out = run(root, "diff", "--packages", one, two).stdout.splitlines()
    assert out == ["+curl 8.5.0-r0", "~musl 1.2.4-r1 -> 1.2.4-r2", "-busybox"]
    lines = _log_package_lines(root, two)
    assert lines[one] == "packages: +busybox 1.36.1-r2 +musl 1.2.4-r1"
    hist = json.loads(run(root, "blame", "--json", two, "/usr/bin/curl").stdout)[0]
    assert hist["events"][0]["package"] == {"format": "apk", "name": "curl",
                                            "version": "8.5.0-r0", "arch": "x86_64"}


def _rpm_header(tags: list[tuple[int, int, object]]) -> bytes:
    """An RPM header blob as rpmdb.sqlite stores it: il, dl, index entries, data."""
    index, data = b"", b""
    for tag, typ, value in tags:
        if typ == 4:  # INT32: aligned on 4
            data += b"\0" * (-len(data) % 4)
            index += struct.pack(">IIII", tag, typ, len(data), len(value))
            data += struct.pack(f">{len(value)}I", *value)
        elif typ == 6:
            index += struct.pack(">IIII", tag, typ, len(data), 1)
            data += value + b"\0"
        else:  # 8: STRING_ARRAY
            index += struct.pack(">IIII", tag, typ, len(data), len(value))
            data += b"".join(v + b"\0" for v in value)
    return struct.pack(">II", len(tags), len(data)) + index + data


def _rpm(name: str, version: str, release: str, epoch: int | None = None,
         files: tuple[tuple[bytes, bytes], ...] = ()) -> bytes:
    tags: list[tuple[int, int, object]] = [(1000, 6, name.encode()), (1001, 6, version.encode()),
                                           (1002, 6, release.encode())]
    if epoch is not None:
        tags.append((1003, 4, [epoch]))
    tags.append((1022, 6, b"x86_64"))
    if files:
        dirs = sorted({d for d, _ in files})
        tags += [(1116, 4, [dirs.index(d) for d, _ in files]),
                 (1117, 8, [b for _, b in files]), (1118, 8, dirs)]
    return _rpm_header(tags)


def _rpmdb(tmp_path: Path, headers: list[bytes]) -> bytes:
    path = tmp_path / f"rpmdb-{len(list(tmp_path.glob('rpmdb-*')))}.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")  # as rpm leaves it; closing checkpoints
    conn.execute("CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, "
                 "blob BLOB NOT NULL)")
    conn.executemany("INSERT INTO Packages (blob) VALUES (?)", [(h,) for h in headers])
    conn.commit()
    conn.close()
    return path.read_bytes()


def test_rpm_database(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = Store(str(root))
    base = _small_base(store, tmp_path)
    db1 = _rpmdb(tmp_path, [
        _rpm("bash", "5.1.8", "6.el9", files=((b"/usr/bin/", b"bash"), (b"/usr/bin/", b"sh"))),
        _rpm("gpg-pubkey", "fd431d51", "4ae0493b"),
        _rpm("zlib", "1.2.11", "40.el9")])
    db2 = _rpmdb(tmp_path, [
        _rpm("bash", "5.1.8", "9.el9", files=((b"/usr/bin/", b"bash"), (b"/usr/bin/", b"sh"))),
        _rpm("openssl", "3.0.7", "24.el9", epoch=1,
             files=((b"/usr/bin/", b"openssl"), (b"/etc/pki/tls/", b"openssl.cnf"))),
        _rpm("gpg-pubkey", "fd431d51", "4ae0493b")])
    one = commit_edit(store, base, lambda ed, w: put_file(ed, w, b"var/lib/rpm/rpmdb.sqlite",
                                                           db1))

    def two_fn(ed: object, w: object) -> None:
        put_file(ed, w, b"var/lib/rpm/rpmdb.sqlite", db2)
        put_file(ed, w, b"etc/pki/tls/openssl.cnf", b"[openssl]\n")

    two = commit_edit(store, one, two_fn)
    store.close()
    out = run(root, "diff", "--packages", one, two).stdout.splitlines()
    assert out == ["+openssl 1:3.0.7-24.el9", "~bash 5.1.8-6.el9 -> 5.1.8-9.el9", "-zlib"]
    hist = json.loads(run(root, "blame", "--json", two, "/etc/pki/tls/openssl.cnf").stdout)[0]
    assert hist["events"][0]["package"]["name"] == "openssl"
    assert hist["events"][0]["package"]["version"] == "1:3.0.7-24.el9"


# -- malformed databases ---------------------------------------------------------------


def _bad_rpm_header_db(tmp_path: Path) -> bytes:
    good = _rpm("bash", "5.1.8", "6.el9")
    lying = struct.pack(">II", 0x7FFF, 10 << 20) + good[8:]  # claims far more than it has
    return _rpmdb(tmp_path, [good, lying])


def _unterminated() -> bytes:
    """A header whose last string (ARCH) has lost its NUL, the data length consistent."""
    h = _rpm("bash", "5.1.8", "6.el9")
    il, dl = struct.unpack_from(">II", h)
    return struct.pack(">II", il, dl - 1) + h[8:-1]


def _sqlite_without_packages(tmp_path: Path) -> bytes:
    path = tmp_path / "other.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE Other (x)")
    conn.commit()
    conn.close()
    return path.read_bytes()


@pytest.mark.parametrize("kind", ["dpkg-line", "dpkg-noversion", "apk", "rpm-not-sqlite",
                                  "rpm-header", "rpm-dirindex", "rpm-type", "rpm-string",
                                  "rpm-table"])
def test_malformed_database_is_one_warning(tmp_path: Path, kind: str) -> None:
    bad = {
        "dpkg-line": (STATUS, b"Package: a\nStatus: install ok installed\nVersion: 1\n"
                              b"this line has no colon\n"),
        "dpkg-noversion": (STATUS, b"Package: a\nStatus: install ok installed\n"),
        "apk": (b"lib/apk/db/installed", b"P:musl\nV:1\nnonsense\n"),
        "rpm-not-sqlite": (b"var/lib/rpm/rpmdb.sqlite", os.urandom(4096)),
        "rpm-header": (b"var/lib/rpm/rpmdb.sqlite", _bad_rpm_header_db(tmp_path)),
        "rpm-dirindex": (b"var/lib/rpm/rpmdb.sqlite", _rpmdb(tmp_path, [_rpm_header([
            (1000, 6, b"x"), (1001, 6, b"1"), (1116, 4, [7]), (1117, 8, [b"f"]),
            (1118, 8, [b"/d/"])])])),
        # NAME as a string array
        "rpm-type": (b"var/lib/rpm/rpmdb.sqlite", _rpmdb(tmp_path, [_rpm_header([
            (1000, 8, [b"x", b"y"]), (1001, 6, b"1")])])),
        # a string without its terminating NUL
        "rpm-string": (b"var/lib/rpm/rpmdb.sqlite", _rpmdb(tmp_path, [_unterminated()])),
        # a sqlite database without a Packages table
        "rpm-table": (b"var/lib/rpm/rpmdb.sqlite", _sqlite_without_packages(tmp_path)),
    }[kind]
    root = tmp_path / "store"
    store = Store(str(root))
    base = _small_base(store, tmp_path)
    top = commit_edit(store, base, lambda ed, w: put_file(ed, w, bad[0], bad[1]))
    store.close()
    for args in (["log", "--stat", top], ["diff", "--packages", base, top],
                 ["blame", top, "/" + bad[0].decode()]):
        proc = run(root, *args)
        warnings = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert len(warnings) == 1, proc.stderr
        assert warnings[0].startswith("layerctl: warning: unreadable package database "
                                      f"{bad[0].decode()} in {top[:12]}: "), warnings
    assert run(root, "diff", "--packages", base, top).stdout == ""


def test_oversized_database_is_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        ) -> None:
    root = tmp_path / "store"
    store = Store(str(root))
    base = _small_base(store, tmp_path)
    status = b"Package: a\nStatus: install ok installed\nVersion: 1\n" * 10
    top = commit_edit(store, base, lambda ed, w: put_file(ed, w, STATUS, status))
    monkeypatch.setattr(packages, "MAX_DB", 100)
    pkgs = packages.Packages(store)
    changes = pkgs.changes(pkgs.tree(read_layer(store, base).root, "base"),
                           pkgs.tree(read_layer(store, top).root, "top"))
    store.close()
    assert changes == []
    assert pkgs.warnings == [f"package database var/lib/dpkg/status in top is {len(status)} "
                             "bytes (over 100); not read"]


# -- version ordering -------------------------------------------------------------------


@pytest.mark.parametrize(("a", "b", "expected"), [
    ("1.0~rc1", "1.0", -1), ("1:0.9", "2.0", 1), ("2.36-9", "2.36-9+deb12u1", -1),
    ("1.0", "1.0-0", 0), ("1.0~~", "1.0~", -1), ("1.0~", "1.0", -1), ("1.0", "1.0a", -1),
    ("1.0a", "1.0+", -1), ("1.0.0", "1.0", 1), ("0:1.2", "1.2", 0), ("1.2-3", "1.2-10", -1),
    ("1.01", "1.1", 0), ("2.0-1~bpo1", "2.0-1", -1), ("10", "9", 1), ("1-2-3", "1-2", 1),
])
def test_dpkg_version_order(a: str, b: str, expected: int) -> None:
    assert deb_compare(a, b) == expected
    assert deb_compare(b, a) == -expected


def test_dpkg_version_order_matches_dpkg() -> None:
    dpkg = shutil.which("dpkg")
    if dpkg is None:
        pytest.skip("dpkg is not installed")
    rnd = random.Random(14)

    def part(chars: str, n: int) -> str:
        return "".join(rnd.choice(chars) for _ in range(rnd.randint(0, n)))

    def gen() -> str:
        epoch = f"{rnd.randint(0, 3)}:" if rnd.random() < 0.2 else ""
        upstream = str(rnd.randint(0, 12)) + part("0123456789.+~abzA", 6)
        if rnd.random() < 0.6:
            return f"{epoch}{upstream}{'-' + part('0-9', 2) if rnd.random() < 0.2 else ''}" \
                   f"-{rnd.randint(0, 9)}{part('0123456789.+~abz', 4)}"
        return epoch + upstream

    pairs = [(gen(), gen()) for _ in range(300)]
    pairs += [(a, a.replace("~", "")) for a, _ in pairs[:60] if "~" in a]
    mismatches = []
    for a, b in pairs:
        lt = subprocess.run([dpkg, "--compare-versions", a, "lt", b]).returncode == 0
        gt = subprocess.run([dpkg, "--compare-versions", a, "gt", b]).returncode == 0
        want = -1 if lt else 1 if gt else 0
        if deb_compare(a, b) != want:
            mismatches.append((a, b, deb_compare(a, b), want))
    assert mismatches == []


@pytest.mark.parametrize(("a", "b", "expected"), [
    ("1.0", "1.0", 0), ("1.0~rc1", "1.0", -1), ("1.0^git1", "1.0", 1), ("1.0^git1", "1.0.1", -1),
    ("1.0a", "1.0", 1), ("2.0", "10", -1), ("1.el8", "1.el8_2", -1), ("a", "1", -1),
    ("1.001", "1.1", 0), ("1.0", "1_0", 0), ("5.1.8", "5.1.10", -1),
])
def test_rpmvercmp(a: str, b: str, expected: int) -> None:
    assert rpmvercmp(a, b) == expected
    assert rpmvercmp(b, a) == -expected


def test_rpm_evr_and_apk_order() -> None:
    assert rpm_compare("1:3.0-1", "3.1-1") == 1
    assert rpm_compare("3.0-2.el9", "3.0-10.el9") == -1
    assert apk_compare("1.2.3_rc1-r0", "1.2.3-r0") == -1
    assert apk_compare("1.2.3-r1", "1.2.3-r0") == 1
    assert apk_compare("1.2.3_p1", "1.2.3") == 1
    assert apk_compare("1.10", "1.9") == 1
    assert apk_compare("1.2a", "1.2b") == -1
    assert apk_compare("1.2.3_alpha2", "1.2.3_beta1") == -1


# -- a container's pending changes ------------------------------------------------------


@pytest.mark.needs_root
def test_diff_packages_of_a_container(tmp_path: Path) -> None:
    from layerctl import containers as C

    root = tmp_path / "store"
    store = Store(str(root))
    base = _small_base(store, tmp_path)
    status = (b"Package: a\nStatus: install ok installed\nArchitecture: all\nVersion: 1.0\n\n"
              b"Package: b\nStatus: install ok installed\nArchitecture: all\nVersion: 2.0\n")
    commit_edit(store, base, lambda ed, w: put_file(ed, w, STATUS, status), name="dpkgimg:1")
    C.create(store, "dpkgimg:1", name="work")
    merged = Path(C.mount(store, "work"))
    try:
        (merged / "var/lib/dpkg/status").write_bytes(
            b"Package: a\nStatus: install ok installed\nArchitecture: all\nVersion: 1.1\n\n"
            b"Package: c\nStatus: install ok installed\nArchitecture: all\nVersion: 0.1~git\n")
        (merged / "var/lib/dpkg/info").mkdir()
        (merged / "var/lib/dpkg/info/c.list").write_bytes(b"/usr/bin/c\n")
        (merged / "usr/bin").mkdir(parents=True)
        (merged / "usr/bin/c").write_bytes(b"#!/bin/sh\n")
        out = run(root, "diff", "--packages", "work").stdout.splitlines()
        assert out == ["+c 0.1~git", "~a 1.0 -> 1.1", "-b"]
        hist = json.loads(run(root, "blame", "--json", "work", "/usr/bin/c").stdout)[0]
        assert [(e["change"], e["layer"], e["package"]) for e in hist["events"]] == [
            ("A", "(uncommitted)", {"format": "deb", "name": "c", "version": "0.1~git",
                                    "arch": "all"})]
        pkgs = packages.Packages(store)
        from layerctl.containers.api import pending
        from layerctl.containers.state import find

        _base, view = packages.pending_trees(pkgs, pending(store, find(store, "work")))
        assert pkgs.owner(view, b"usr/bin/c").label == "c 0.1~git"
    finally:
        C.umount(store, "work")
        store.close()


def test_oversized_file_list_is_not_attributed(deb: dict, monkeypatch: pytest.MonkeyPatch,
                                               ) -> None:
    L = deb["layers"]
    store = Store(str(deb["root"]))
    try:
        pkgs = packages.Packages(store)
        tree = pkgs.tree(read_layer(store, L[1]).root, "l1")
        assert pkgs.owner(tree, b"/usr/bin/hello").key == "hello"
        monkeypatch.setattr(packages, "MAX_LIST", 62)  # hello.list is 63 bytes
        pkgs = packages.Packages(store)
        tree = pkgs.tree(read_layer(store, L[1]).root, "l1")
        assert pkgs.owner(tree, b"/usr/bin/hello") is None
        assert ("var/lib/dpkg/info/hello.list in l1 is over 62 bytes; "
                "its files are not attributed") in pkgs.warnings
    finally:
        store.close()


def test_arch_change_and_repeated_names() -> None:
    old = pkgdb.parse_dpkg_status(
        b"Package: libx\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1\n\n"
        b"Package: libx\nStatus: install ok installed\nArchitecture: i386\nVersion: 1\n\n"
        b"Package: tool\nStatus: install ok installed\nArchitecture: amd64\nVersion: 2\n\n"
        b"Package: gone\nStatus: deinstall ok config-files\nArchitecture: all\nVersion: 3\n")
    new = pkgdb.parse_dpkg_status(
        b"Package: libx\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1\n\n"
        b"Package: tool\nStatus: hold ok installed\nArchitecture: arm64\nVersion: 2\n")
    assert sorted(old) == ["libx:amd64", "libx:i386", "tool"]  # config-files: not installed
    texts = [c.text() for c in packages.diff_packages("deb", old, new)]
    assert texts == ["+libx 1", "~tool 2 (amd64 -> arm64)", "-libx:amd64", "-libx:i386"]


def test_tui_log_names_each_layers_packages(deb: dict) -> None:
    """The TUI's log shows the same packages line as `log --stat`, per layer."""
    import asyncio

    from textual.widgets import RichLog

    from layerctl.store.repo import Store
    from layerctl.tui.app import LayerctlApp
    from layerctl.tui.screens.log import LogScreen
    from tests.tuihelpers import wait_for

    L = deb["layers"]
    store = Store(str(deb["root"]))

    async def scenario() -> str:
        app = LayerctlApp(store, image=L[-1])
        async with app.run_test(size=(160, 48)) as pilot:
            await pilot.press("l")

            def text() -> str:
                if not isinstance(app.screen, LogScreen):
                    return ""
                return "\n".join(line.text for line in app.screen.query_one(RichLog).lines)

            # the base layer comes last; the log reads every layer's packages in a worker
            await wait_for(pilot, lambda: "packages: +adduser" in text(),
                           what="the log to show the base layer's packages")
            return text()

    try:
        text = asyncio.run(scenario())
    finally:
        store.close()
    assert f"packages: +hello {HELLO_1}" in text
    assert f"packages: ~libc6 {LIBC_OLD} -> {LIBC_NEW} -hostname" in text
    assert f"~sed {SED_OLD} -> {SED_NEW} (downgrade)" in text


@pytest.mark.parametrize("seed", range(4))
def test_dpkg_fields_kept_are_the_fields_read(seed: int) -> None:
    """parse_dpkg_status keeps only the fields it reads; the stanzas, the checks of
    every line and the errors (with their line numbers) stay those of a full read."""
    lines = ["Package: a", "package: B", "Status: install ok installed",
             "Status: deinstall ok config-files", "Version: 1", "VERSION:\t2\r",
             "Architecture: amd64", "Description: x", "Depends: c", "", " ", "\t", "\r",
             " cont", "\tcont", " \x0c", "\x0c", "\x0bX: y", "Bad line", ":x", "a b: c",
             "a\tb: c", "Na:me: v", "x:", " .", "\u00a0", "\u2028", "ä: ö"]
    rng = random.Random(seed)
    for _ in range(20000):
        text = "\n".join(rng.choice(lines) for _ in range(rng.randint(0, 12)))
        try:
            full = [{k: v for k, v in st.items() if k in pkgdb._DPKG_FIELDS}
                    for st in pkgdb._fields(text, "w")]
            full = [st for st in full if st]
        except pkgdb.Malformed as e:
            with pytest.raises(pkgdb.Malformed) as got:
                pkgdb._fields(text, "w", pkgdb._DPKG_FIELDS)
            assert str(got.value) == str(e)
            continue
        assert pkgdb._fields(text, "w", pkgdb._DPKG_FIELDS) == full, repr(text)
