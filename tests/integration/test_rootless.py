"""Rootless containers: an unprivileged user creates, changes, checks and commits a
vfs container, and the store keeps what the user could not apply on disk
(ownership, device nodes, privileged xattrs).

The tests run as root and create a throw-away user (removed with `userdel -r`
at the end of the module, also when a test fails). The user cannot read the
pyenv interpreter under /root, nor maybe the checkout of this repository, so
layerctl runs as that user from a world-readable copy of the package with a
venv made from Debian's /usr/bin/python3 (cached in /var/tmp, keyed by the
project's dependencies); without python3-venv or a package index the tests
skip and say why.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import pwd
import re
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from layerctl.store.debris import pid_alive
from tests.paths import REPO_ROOT
from tests.treecompare import compare, snapshot

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_tool("useradd", "userdel", "tar")]


SYSTEM_PYTHON = os.environ.get("LAYERCTL_ROOTLESS_PYTHON", "/usr/bin/python3")
VENV_PREFIX = "/var/tmp/layerctl-rootless-venv-"
USER_COMMENT = "layerctl rootless test pid="

T0 = 1_600_000_000 * 10**9  # every entry of the base tree
T1 = 1_700_000_000 * 10**9  # the entries the changes write


# --- a venv the test user can run ----------------------------------------------------


def _dependencies() -> list[str]:
    with open(REPO_ROOT / "pyproject.toml", "rb") as f:
        return sorted(tomllib.load(f)["project"]["dependencies"])


def _build_venv(venv: Path, deps: list[str]) -> str | None:
    """Make the venv; None on success, else why not."""
    shutil.rmtree(venv, ignore_errors=True)
    steps = [
        [SYSTEM_PYTHON, "-m", "venv", str(venv)],
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
         "--disable-pip-version-check", *deps],
    ]
    for argv in steps:
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=900,
                               stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"`{' '.join(argv[:4])} ...` failed: {e}"
        if r.returncode != 0:
            tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-5:])
            return f"`{' '.join(argv[:4])} ...` exited with {r.returncode}: {tail}"
    for dirpath, _dirs, files in os.walk(venv):
        for name in [dirpath, *(os.path.join(dirpath, f) for f in files)]:
            st = os.lstat(name)
            if not os.path.islink(name):
                os.chmod(name, st.st_mode | 0o444 | (0o111 if st.st_mode & 0o111 else 0))
    (venv / ".complete").write_text("\n".join(deps) + "\n")
    return None


@pytest.fixture(scope="session")
def rootless_python() -> Iterator[str]:
    """Path of a python everyone can run, with layerctl's dependencies installed.
    A shared lock on the venv's lock file says it is in use (pruning skips it)."""
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        pytest.skip(f"{SYSTEM_PYTHON} not found (apt-get install python3 python3-venv)")
    r = subprocess.run([SYSTEM_PYTHON, "-c", "import sys, venv, ensurepip; "
                        "print('%d.%d' % sys.version_info[:2])"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"{SYSTEM_PYTHON} cannot make venvs (apt-get install python3-venv): "
                    f"{r.stderr.strip().splitlines()[-1:]}")
    version = r.stdout.strip()
    if tuple(int(x) for x in version.split(".")) < (3, 11):
        pytest.skip(f"{SYSTEM_PYTHON} is Python {version}; layerctl needs 3.11")
    deps = _dependencies()
    key = hashlib.sha256("\n".join([os.path.realpath(SYSTEM_PYTHON), version, *deps])
                         .encode()).hexdigest()[:16]
    venv = Path(VENV_PREFIX + key)
    with open(f"{VENV_PREFIX}{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (venv / ".complete").is_file():
            why = _build_venv(venv, deps)
            if why is not None:
                shutil.rmtree(venv, ignore_errors=True)
                pytest.skip(f"cannot build the rootless test venv {venv}: {why}")
            _prune_venvs(keep=venv)
        fcntl.flock(lock, fcntl.LOCK_SH)
        yield str(venv / "bin" / "python")


def _prune_venvs(keep: Path) -> None:
    """Remove cached venvs of other dependency sets that no run is building."""
    for other in Path(VENV_PREFIX).parent.glob(Path(VENV_PREFIX).name + "*"):
        if other == keep or other.suffix == ".lock" or not other.is_dir():
            continue
        with open(f"{other}.lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            shutil.rmtree(other, ignore_errors=True)
            os.unlink(f"{other}.lock")


# --- a throw-away unprivileged user ----------------------------------------------------


@dataclass
class RootlessUser:
    name: str
    uid: int
    gid: int


def _userdel(name: str) -> str | None:
    """Remove the user and its home; None on success, else the error."""
    r = subprocess.run(["userdel", "-r", name], capture_output=True, text=True)
    if r.returncode != 0:
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            r2 = subprocess.run(["userdel", "-r", "-f", name], capture_output=True, text=True)
            if r2.returncode != 0:
                return f"userdel -r {name}: {r.stderr.strip()} / {r2.stderr.strip()}"
    with contextlib.suppress(KeyError):
        pwd.getpwnam(name)
        return f"user {name} still exists after userdel -r"
    return None


def _remove_stale_users() -> None:
    """Users left by a test run that was killed before its teardown."""
    for pw in pwd.getpwall():
        m = re.fullmatch(re.escape(USER_COMMENT) + r"(\d+)", pw.pw_gecos)
        if m and pw.pw_name.startswith("lcrl") and not pid_alive(int(m.group(1))):
            _userdel(pw.pw_name)


def _free_uid() -> int:
    taken = {pw.pw_uid for pw in pwd.getpwall()}
    import grp

    taken_gids = {g.gr_gid for g in grp.getgrall()}
    rng = secrets.SystemRandom()
    for _ in range(1000):
        uid = rng.randrange(20000, 60000)
        if uid not in taken and uid not in taken_gids:
            return uid
    raise RuntimeError("no free uid in 20000..59999")


@pytest.fixture(scope="module")
def test_user() -> Iterator[RootlessUser]:
    """A new unprivileged user (not uid 1000, which the test tree uses), deleted
    with `userdel -r` at the end of the module whatever happened."""
    if shutil.which("runuser") is None and shutil.which("setpriv") is None:
        pytest.skip("neither runuser nor setpriv installed")
    _remove_stale_users()
    name = f"lcrl{secrets.token_hex(5)}"
    uid = _free_uid()
    r = subprocess.run(
        ["useradd", "--create-home", "--user-group", "--uid", str(uid), "--shell", "/bin/sh",
         "--comment", f"{USER_COMMENT}{os.getpid()}", name],
        capture_output=True, text=True,
    )
    if r.returncode != 0:
        # Nothing to clean up unless useradd got half way.
        _userdel(name)
        pytest.skip(f"useradd failed: {r.stderr.strip()}")
    try:
        pw = pwd.getpwnam(name)
        yield RootlessUser(name, pw.pw_uid, pw.pw_gid)
    finally:
        error = _userdel(name)
        if error:
            pytest.fail(error)


# --- running layerctl as that user -----------------------------------------------------


class Rootless:
    """A world-readable work dir with a copy of the package, a store owned by the
    user, and helpers to run layerctl (and python snippets) as the user or as root."""

    def __init__(self, user: RootlessUser, python: str, top: Path) -> None:
        self.user, self.python, self.top = user, python, top
        self.pkg = top / "pkg"
        self.store = top / "store"
        shutil.copytree(REPO_ROOT / "layerctl", self.pkg / "layerctl",
                        ignore=shutil.ignore_patterns("__pycache__"))
        for dirpath, _dirs, files in os.walk(self.pkg):
            os.chmod(dirpath, 0o755)
            for f in files:
                os.chmod(os.path.join(dirpath, f), 0o644)
        self.store.mkdir()
        os.chown(self.store, user.uid, user.gid)

    def _as_user(self, argv: list[str]) -> list[str]:
        env = ["env", "-i", "PATH=/usr/bin:/bin:/usr/sbin:/sbin", f"HOME=/home/{self.user.name}",
               f"USER={self.user.name}", "LANG=C.UTF-8", f"LAYERCTL_ROOT={self.store}",
               f"PYTHONPATH={self.pkg}", "PYTHONDONTWRITEBYTECODE=1",
               "LAYERCTL_AUTHOR=Rootless Tester <rootless@example.com>"]
        if shutil.which("runuser"):
            return ["runuser", "-u", self.user.name, "--", *env, *argv]
        return ["setpriv", f"--reuid={self.user.uid}", f"--regid={self.user.gid}",
                "--init-groups", "--", *env, *argv]

    def run(self, argv: list[str], check: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run(self._as_user(argv), capture_output=True, text=True, cwd=self.top,
                           stdin=subprocess.DEVNULL, timeout=300)
        if check and r.returncode != 0:
            pytest.fail(f"as {self.user.name}: `{' '.join(argv)}` exited with {r.returncode}\n"
                        f"--- stdout ---\n{r.stdout}--- stderr ---\n{r.stderr}", pytrace=False)
        return r

    def layerctl(self, *args: object, check: bool = True) -> subprocess.CompletedProcess:
        return self.run([self.python, "-m", "layerctl", *map(str, args)], check=check)

    def root_layerctl(self, *args: object) -> subprocess.CompletedProcess:
        """layerctl as root (this interpreter, the working tree) on the same store."""
        env = dict(os.environ, LAYERCTL_ROOT=str(self.store),
                   PYTHONPATH=os.pathsep.join(p for p in (str(REPO_ROOT),
                                                          os.environ.get("PYTHONPATH")) if p))
        r = subprocess.run([sys.executable, "-m", "layerctl", *map(str, args)],
                           capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL,
                           timeout=300)
        assert r.returncode == 0, f"root: layerctl {args}: {r.stdout}{r.stderr}"
        return r

    def rootfs(self, container: str) -> Path:
        data = json.loads(self.layerctl("inspect", container).stdout)[0]
        return Path(data["GraphDriver"]["Data"]["Dir"])

    def status(self, container: str, drop_cache: bool = False) -> list[str]:
        """`layerctl status` lines; drop_cache first forgets the vfs stat cache, so that
        every entry is compared with the store (the translation, not the cache, must
        then keep untouched entries clean)."""
        if drop_cache:
            state = self.rootfs(container).parent
            for name in ("statcache", "hashes"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(state / name)
        return self.layerctl("status", container).stdout.splitlines()


@pytest.fixture
def rootless(test_user: RootlessUser, rootless_python: str) -> Iterator[Rootless]:
    top = Path(tempfile.mkdtemp(prefix="layerctl-rootless-", dir="/var/tmp"))
    try:
        os.chmod(top, 0o755)
        yield Rootless(test_user, rootless_python, top)
    finally:
        shutil.rmtree(top, ignore_errors=True)


# --- the trees -------------------------------------------------------------------------

# security.capability for cap_net_raw+ep (VFS_CAP_REVISION_2, effective)
CAP_NET_RAW = bytes.fromhex("01000002" "00200000" "00000000" "00000000" "00000000")


def _build_base(top: Path) -> Path:
    """What root built: 0:0 and 1000:1000 owners, setuid/setgid binaries, a hardlink,
    char and block devices, a fifo, security.capability and trusted.* xattrs."""
    def write(rel: str, text: str, mode: int, owner: tuple[int, int] = (0, 0)) -> None:
        path = top / rel
        path.write_text(text)
        os.chown(path, *owner)
        os.chmod(path, mode)

    for rel in ("etc", "home/alice", "usr/bin", "dev", "run", "srv", "opt/empty"):
        (top / rel).mkdir(parents=True, exist_ok=True)
    write("etc/hostname", "base\n", 0o644)
    write("etc/motd", "welcome\n", 0o644)
    write("etc/shadow", "root:*:19000:0:99999:7:::\n", 0o640, (0, 42))
    os.chown(top / "home/alice", 1000, 1000)
    os.chmod(top / "home/alice", 0o750)
    write("home/alice/notes", "notes\n", 0o600, (1000, 1000))
    os.setxattr(top / "home/alice/notes", "trusted.layerctl.test", b"alice")
    write("home/alice/.profile", "PATH=/bin\n", 0o644, (1000, 1000))
    write("usr/bin/su", "\x7fELF su\n", 0o4755)
    os.link(top / "usr/bin/su", top / "usr/bin/sudoedit")
    write("usr/bin/wall", "\x7fELF wall\n", 0o2755, (0, 5))
    write("usr/bin/ping", "\x7fELF ping\n", 0o755)
    os.setxattr(top / "usr/bin/ping", "security.capability", CAP_NET_RAW)
    os.setxattr(top / "etc/hostname", "user.origin", b"base")
    os.mknod(top / "dev/null", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    os.chmod(top / "dev/null", 0o666)
    os.mknod(top / "dev/loop0", 0o600 | stat.S_IFBLK, os.makedev(7, 0))
    os.chown(top / "dev/loop0", 0, 6)
    os.chmod(top / "dev/loop0", 0o660)
    os.mkfifo(top / "run/initctl", 0o600)
    os.symlink("usr/bin", top / "bin")
    os.chmod(top / "srv", 0o755)
    for dirpath, dirs, files in os.walk(top, topdown=False):
        for name in [*files, *dirs]:
            os.utime(os.path.join(dirpath, name), ns=(T0, T0), follow_symlinks=False)
    os.utime(top, ns=(T0, T0))
    return top


# The four changes, as a script run as the test user in its container's rootfs and as
# root in the expected tree. Parent directories get their mtimes back so that exactly
# the four changes show.
CHANGES = f"""
import os, sys
top = sys.argv[1]
def p(rel):
    return os.path.join(top, rel)
parents = {{d: os.lstat(p(d)).st_mtime_ns for d in ("etc", "srv")}}
with open(p("home/alice/notes"), "a") as f:
    f.write("more notes\\n")
with open(p("srv/new"), "w") as f:
    f.write("new file\\n")
os.chmod(p("srv/new"), 0o644)
os.unlink(p("etc/motd"))
os.chmod(p("usr/bin/ping"), 0o750)
for rel in ("home/alice/notes", "srv/new"):
    os.utime(p(rel), ns=({T1}, {T1}))
for d, ns in parents.items():
    os.utime(p(d), ns=(ns, ns))
"""

EXPECTED_STATUS = ["D /etc/motd", "C /home/alice/notes", "A /srv/new", "C /usr/bin/ping"]


def _import_base(rl: Rootless, tmp_path: Path, name: str) -> Path:
    """Root builds the tree and tars it (numeric owners, devices, all xattrs); the
    user imports the tar. Returns the source tree."""
    src = _build_base(tmp_path / "src")
    tar = rl.top / "base.tar"
    subprocess.run(["tar", "--xattrs", "--xattrs-include=*", "--numeric-owner",
                    "--format=posix", "-C", str(src), "-cpf", str(tar), "."], check=True)
    os.chmod(tar, 0o644)
    rl.layerctl("import", tar, name)
    # The starting point is faithful: root's checkout of the imported image is the tree.
    out = tmp_path / "base-checkout"
    rl.root_layerctl("checkout", name, out)
    assert compare(snapshot(out), snapshot(src)) == []
    return src


# --- tests -----------------------------------------------------------------------------


def test_rootless_create_change_status_commit(rootless, tmp_path):
    rl = rootless
    me = rl.run([rl.python, "-c", "import os; print(os.geteuid(), os.getegid())"])
    assert me.stdout.split() == [str(rl.user.uid), str(rl.user.gid)]
    src = _import_base(rl, tmp_path, "rootless:base")

    created = rl.layerctl("create", "--name", "rl", "rootless:base")
    assert "using the vfs driver" in created.stderr
    rootfs = rl.rootfs("rl")
    # Really rootless: the checkout holds the user's files and a placeholder for the device.
    st = os.lstat(rootfs / "dev/null")
    assert stat.S_ISREG(st.st_mode) and st.st_uid == rl.user.uid
    assert os.lstat(rootfs / "home/alice/notes").st_uid == rl.user.uid

    # No false positives, with the stat cache or without it.
    assert rl.status("rl") == []
    assert rl.status("rl", drop_cache=True) == []

    rl.run([rl.python, "-c", CHANGES, str(rootfs)])
    assert rl.status("rl") == EXPECTED_STATUS
    assert rl.status("rl", drop_cache=True) == EXPECTED_STATUS
    details = {c["Path"]: c["Details"]
               for c in json.loads(rl.layerctl("status", "--json", "rl").stdout)}
    assert details["/home/alice/notes"] == ["content"]  # owner and trusted.* untouched
    assert details["/usr/bin/ping"] == ["mode 0755→0750"]  # owner and capability untouched

    layer = rl.layerctl("commit", "-q", "-m", "rootless changes", "rl", "rootless:changed")
    layer_id = layer.stdout.strip()
    assert rl.status("rl") == []
    assert rl.status("rl", drop_cache=True) == []

    # Root checks the committed layer out: the original ownership, devices and xattrs,
    # plus the four changes made the way root would have made them.
    out = tmp_path / "committed"
    rl.root_layerctl("checkout", layer_id, out)
    expected = _build_base(tmp_path / "expected")
    subprocess.run([sys.executable, "-c", CHANGES, str(expected)], check=True)
    assert compare(snapshot(out), snapshot(expected)) == []
    assert compare(snapshot(src), snapshot(expected)) != []  # the changes are there
    new = os.lstat(out / "srv/new")
    assert (new.st_uid, new.st_gid) == (0, 0)


def test_rootless_devices_restore_and_reset(rootless, tmp_path):
    rl = rootless
    _import_base(rl, tmp_path, "rootless:base")
    rl.layerctl("create", "--name", "rl2", "rootless:base")
    rootfs = rl.rootfs("rl2")

    # chmod of a device placeholder is a mode change of the device, not a new file.
    os_chmod = "import os, sys; os.chmod(sys.argv[1], 0o600)"
    rl.run([rl.python, "-c", os_chmod, str(rootfs / "dev/null")])
    assert rl.status("rl2", drop_cache=True) == ["C /dev/null"]
    details = json.loads(rl.layerctl("status", "--json", "rl2").stdout)[0]["Details"]
    assert details == ["mode 0666→0600"]

    # Restoring discards it; deleting and restoring files and a device is clean again.
    rl.layerctl("restore", "rl2", "/dev/null")
    assert rl.status("rl2", drop_cache=True) == []
    rl.run(["rm", "-f", str(rootfs / "dev/loop0"), str(rootfs / "home/alice/notes")])
    assert rl.status("rl2") == ["C /dev", "D /dev/loop0", "C /home/alice",
                                "D /home/alice/notes"]
    # ... and restore settles the parents' mtimes (their owner on disk is the user's).
    rl.layerctl("restore", "rl2", "/dev/loop0", "/home/alice/notes")
    assert rl.status("rl2", drop_cache=True) == []

    # Writing into a placeholder turns the device into a regular file: a real change.
    rl.run(["sh", "-c", f"echo data > {rootfs}/dev/null"])
    changes = json.loads(rl.layerctl("status", "--json", "rl2").stdout)
    assert [c["Path"] for c in changes] == ["/dev/null"]
    assert changes[0]["Details"][0] == "type char device→file"

    # Writing to a setgid binary: the kernel clears the bit for the unprivileged
    # owner, root would not have: only the content changes.
    rl.run(["sh", "-c", f"echo more >> {rootfs}/usr/bin/wall"])
    wall = [c for c in json.loads(rl.layerctl("status", "--json", "rl2").stdout)
            if c["Path"] == "/usr/bin/wall"]
    assert wall[0]["Details"] == ["content"]

    # Reset checks the base out again (with a new rootless map): clean.
    rl.layerctl("reset", "rl2")
    assert rl.status("rl2", drop_cache=True) == []

    # A committed chmod of the device keeps it a device, with the new mode.
    rl.run([rl.python, "-c", os_chmod, str(rootfs / "dev/loop0")])
    layer_id = rl.layerctl("commit", "-q", "rl2").stdout.strip()
    assert rl.status("rl2", drop_cache=True) == []
    out = tmp_path / "co"
    rl.root_layerctl("checkout", layer_id, out)
    st = os.lstat(out / "dev/loop0")
    assert stat.S_ISBLK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    assert (os.major(st.st_rdev), os.minor(st.st_rdev), st.st_uid, st.st_gid) == (7, 0, 0, 6)


def test_rootless_read_only_directories_reset_and_rm(rootless, tmp_path):
    # Fedora's /root is 0550: the user's checkout has it read-only too, and reset and
    # rm must still be able to remove the rootfs.
    rl = rootless
    src = tmp_path / "ro"
    (src / "root").mkdir(parents=True)
    (src / "root" / ".bashrc").write_text("alias ll='ls -l'\n")
    os.chmod(src / "root", 0o550)
    tar = rl.top / "ro.tar"
    subprocess.run(["tar", "--numeric-owner", "-C", str(src), "-cpf", str(tar), "."],
                   check=True)
    os.chmod(tar, 0o644)
    rl.layerctl("import", tar, "ro")
    rl.layerctl("create", "--name", "ro1", "ro")
    state = rl.rootfs("ro1").parent
    assert rl.status("ro1", drop_cache=True) == []
    rl.layerctl("reset", "ro1")
    assert rl.status("ro1", drop_cache=True) == []
    rl.layerctl("rm", "ro1")
    assert not state.exists()
