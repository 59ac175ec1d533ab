"""layerctl.runtime: OCI bundles from image configs, and real runs under crun/runc.

The bundle tests need nothing. The run tests need root and a runtime (crun or
runc) and run a copy of the Debian minbase corpus; every container a test starts
is stopped and deleted in teardown, pass or fail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from layerctl import runtime as rt
from layerctl.errors import LayerctlError, NotFound
from tests.layerhelpers import container_names
from tests.paths import REPO_ROOT
from tests.ptyhelpers import on_a_pty, read_until, reap

# -- bundle (no runtime needed) ---------------------------------------------------


@pytest.fixture
def tiny_rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\n"
        "alice:x:1001:1002:Alice:/home/alice:/bin/sh\n"
        "bob:x:1003:1003::/home/bob:/bin/sh\n"
    )
    (root / "etc" / "group").write_text(
        "root:x:0:\nalice:x:1002:\nstaff:x:50:alice,bob\nbob:x:1003:\n"
    )
    return root


def _bundle(tmp_path: Path, rootfs: Path, config: dict, **kw: object) -> dict:
    kw.setdefault("env", [])
    out = rt.make_bundle(str(tmp_path / "bundle"), str(rootfs), config, **kw)
    on_disk = json.loads((tmp_path / "bundle" / "config.json").read_text())
    assert on_disk == out
    return out


def test_bundle_defaults(tmp_path: Path, tiny_rootfs: Path) -> None:
    spec = _bundle(tmp_path, tiny_rootfs, {"config": {"Cmd": ["sh"]}}, hostname="web")
    proc = spec["process"]
    assert spec["ociVersion"].startswith("1.0")
    assert "rlimits" not in proc
    assert proc["args"] == ["sh"]
    assert proc["cwd"] == "/"
    assert proc["user"] == {"uid": 0, "gid": 0}
    assert proc["terminal"] is False
    env = dict(e.split("=", 1) for e in proc["env"])
    assert env["PATH"] == rt.DEFAULT_PATH
    assert env["HOME"] == "/root"
    assert env["HOSTNAME"] == "web"
    assert spec["hostname"] == "web"
    assert spec["root"] == {"path": str(tiny_rootfs), "readonly": False}
    assert os.path.isabs(spec["root"]["path"])
    kinds = {ns["type"] for ns in spec["linux"]["namespaces"]}
    assert kinds == {"pid", "ipc", "uts", "mount", "network"}
    assert all("path" not in ns for ns in spec["linux"]["namespaces"])
    assert "resources" not in spec["linux"] and "cgroupsPath" not in spec["linux"]
    dests = [m["destination"] for m in spec["mounts"]]
    assert dests == ["/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys"]
    assert "ro" in spec["mounts"][-1]["options"]
    assert "/proc/kcore" in spec["linux"]["maskedPaths"]
    assert "/proc/sys" in spec["linux"]["readonlyPaths"]
    assert "CAP_CHOWN" in proc["capabilities"]["effective"]
    assert "CAP_SYS_ADMIN" not in proc["capabilities"]["bounding"]


def test_bundle_docker_rules(tmp_path: Path, tiny_rootfs: Path) -> None:
    config = {
        "config": {
            "Entrypoint": ["/bin/tini", "--"],
            "Cmd": ["nginx", "-g", "daemon off;"],
            "Env": ["PATH=/opt/bin:/bin", "A=1", "B=2"],
            "WorkingDir": "/srv/app",
            "User": "alice",
        }
    }
    spec = _bundle(tmp_path, tiny_rootfs, config, tty=True)
    proc = spec["process"]
    assert proc["args"] == ["/bin/tini", "--", "nginx", "-g", "daemon off;"]
    assert proc["cwd"] == "/srv/app"
    assert (tiny_rootfs / "srv" / "app").is_dir()  # created like Docker does
    assert proc["user"] == {"uid": 1001, "gid": 1002, "additionalGids": [50]}
    assert proc["capabilities"]["effective"] == []
    assert proc["terminal"] is True
    env = dict(e.split("=", 1) for e in proc["env"])
    assert env["PATH"] == "/opt/bin:/bin" and env["HOME"] == "/home/alice"
    assert env["TERM"] == "xterm"

    spec = _bundle(
        tmp_path, tiny_rootfs, config, args=["id", "-u"], env=["B=3", "C=4"],
        workdir="/tmp", user="1003:50",
    )
    proc = spec["process"]
    assert proc["args"] == ["/bin/tini", "--", "id", "-u"]  # CMD replaced, ENTRYPOINT kept
    assert proc["cwd"] == "/tmp"
    assert proc["user"] == {"uid": 1003, "gid": 50}
    env = [e for e in proc["env"] if e[0] in "ABC"]
    assert env == ["A=1", "B=3", "C=4"]


def test_bundle_users(tmp_path: Path, tiny_rootfs: Path) -> None:
    user = rt.resolve_user
    assert user(str(tiny_rootfs), "bob") == {
        "uid": 1003, "gid": 1003, "home": "/home/bob", "additionalGids": [50],
    }
    assert user(str(tiny_rootfs), "4242") == {"uid": 4242, "gid": 0, "home": "/"}
    assert user(str(tiny_rootfs), "alice:staff")["gid"] == 50
    assert user(str(tiny_rootfs), "")["uid"] == 0
    with pytest.raises(NotFound, match="unable to find user nobody"):
        user(str(tiny_rootfs), "nobody")
    with pytest.raises(NotFound, match="unable to find group wheel"):
        user(str(tiny_rootfs), "alice:wheel")


def test_bundle_reads_passwd_inside_rootfs_only(tmp_path: Path, tiny_rootfs: Path) -> None:
    # A hostile image whose /etc/passwd is an absolute symlink: it must be read
    # as the image sees it (rootfs/host-etc/passwd), not as the host's file.
    (tiny_rootfs / "etc" / "passwd").unlink()
    (tiny_rootfs / "etc" / "passwd").symlink_to("/../../../../etc/shadow-like")
    (tiny_rootfs / "etc" / "shadow-like").write_text("eve:x:77:77::/e:/bin/sh\n")
    assert rt.resolve_user(str(tiny_rootfs), "eve")["uid"] == 77
    with pytest.raises(NotFound):
        rt.resolve_user(str(tiny_rootfs), "root")  # the host's root is not visible


def test_bundle_errors(tmp_path: Path, tiny_rootfs: Path) -> None:
    from layerctl.errors import BadInput

    with pytest.raises(BadInput, match="no command"):
        _bundle(tmp_path, tiny_rootfs, {"config": {}})
    with pytest.raises(BadInput, match="absolute"):
        _bundle(tmp_path, tiny_rootfs, {"config": {"Cmd": ["sh"]}}, workdir="rel")
    with pytest.raises(NotFound):
        _bundle(tmp_path, tmp_path / "missing", {"config": {"Cmd": ["sh"]}})


def test_find_runtime(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("LAYERCTL_RUNTIME", raising=False)
    with pytest.raises(LayerctlError) as err:
        rt.find_runtime()
    assert str(err.value) == "no OCI runtime found: install crun or runc (apt-get install crun)"
    monkeypatch.setenv("LAYERCTL_RUNTIME", "no-such-runtime")
    with pytest.raises(LayerctlError, match="no-such-runtime"):
        rt.find_runtime()
    fake = tmp_path / "runc"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.delenv("LAYERCTL_RUNTIME")
    assert rt.find_runtime() == str(fake)


def test_status_without_records(tmp_path: Path) -> None:
    store = _FakeStore(tmp_path / "store")
    assert rt.status(store, "nothing") == ("created", None)


# -- real runs -----------------------------------------------------------------


class _FakeStore:
    """The runtime only needs Store.path(); keep these tests independent of
    layerctl.containers (and fast: no import of the corpus)."""

    def __init__(self, root: Path) -> None:
        self.root = str(root)

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)


def _have_runtime() -> str | None:
    try:
        return rt.find_runtime()
    except LayerctlError:
        return None


needs_runtime = pytest.mark.skipif(
    os.geteuid() != 0 or _have_runtime() is None,
    reason="needs root" if os.geteuid() != 0 else "no OCI runtime (crun or runc) installed",
)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, debian_rootfs: Path) -> dict:
    """A copy of the Debian corpus (shared by this module's tests) and a store."""
    if os.geteuid() != 0 or _have_runtime() is None:
        pytest.skip("needs root and crun or runc")
    base = tmp_path_factory.mktemp("runtime")
    rootfs = base / "rootfs"
    subprocess.run(["cp", "-a", str(debian_rootfs), str(rootfs)], check=True)
    with open(rootfs / "etc" / "passwd", "a") as f:
        f.write("alice:x:1001:1001:Alice:/home/alice:/bin/sh\n")
    with open(rootfs / "etc" / "group", "a") as f:
        f.write("alice:x:1001:\n")
    store = _FakeStore(base / "store")
    os.makedirs(store.root)
    runtime = rt.runtime_for(store)
    yield {"rootfs": rootfs, "store": store, "runtime": runtime}
    # Safety net: nothing may outlive the module.
    for c in rt.list_containers(runtime):
        rt.stop(runtime, c["id"], timeout=0)
    shutil.rmtree(base, ignore_errors=True)


class Containers:
    def __init__(self, world: dict) -> None:
        self.world = world
        self.ids: list[str] = []

    @property
    def runtime(self) -> rt.Runtime:
        return self.world["runtime"]

    def new(self, cmd: list[str] | None, config: dict | None = None, **kw: object) -> str:
        cid = "t" + uuid.uuid4().hex[:12]
        self.ids.append(cid)
        kw.setdefault("env", [])
        rt.make_bundle(
            self.bundle(cid), str(self.world["rootfs"]), config or {"config": {}},
            args=cmd, hostname=cid, **kw,
        )
        return cid

    def bundle(self, cid: str) -> str:
        return rt.bundle_path(self.world["store"], cid)

    def run(self, cid: str, **kw: object) -> int:
        return rt.run(self.runtime, cid, self.bundle(cid), **kw)

    def cleanup(self) -> None:
        for cid in self.ids:
            rt.stop(self.runtime, cid, timeout=0, bundle_dir=self.bundle(cid))
            assert rt.state(self.runtime, cid) is None


@pytest.fixture
def containers(world: dict) -> Containers:
    c = Containers(world)
    yield c
    c.cleanup()


@needs_runtime
@pytest.mark.timeout(120)
def test_exit_code_and_output(containers: Containers, capfd: pytest.CaptureFixture) -> None:
    cid = containers.new(["sh", "-c", "exit 3"])
    assert containers.run(cid) == 3
    assert rt.status(containers.world["store"], cid) == ("exited", 3)
    assert rt.state(containers.runtime, cid) is None  # the runtime removed it

    cid = containers.new(["echo", "hi"])
    capfd.readouterr()
    assert containers.run(cid) == 0
    out = capfd.readouterr()
    assert out.out == "hi\n"

    cid = containers.new(["sh", "-c", "echo oops >&2; exit 255"])
    assert containers.run(cid) == 255
    assert capfd.readouterr().err.endswith("oops\n")


@needs_runtime
@pytest.mark.timeout(120)
def test_image_config_and_overrides(containers: Containers, capfd: pytest.CaptureFixture) -> None:
    config = {
        "config": {
            "Env": ["GREETING=hello", "OTHER=keep"],
            "WorkingDir": "/srv",
            "User": "alice",
            "Cmd": ["sh", "-c", 'echo "$GREETING $OTHER $(pwd) $(id -u):$(id -g) $HOME"'],
        }
    }
    capfd.readouterr()
    assert containers.run(containers.new(None, config)) == 0
    assert capfd.readouterr().out == "hello keep /srv 1001:1001 /home/alice\n"

    cid = containers.new(
        ["sh", "-c", 'echo "$GREETING $OTHER $(pwd) $(id -u)"'], config,
        env=["GREETING=bye"], workdir="/tmp", user="1000",
    )
    assert containers.run(cid) == 0
    assert capfd.readouterr().out == "bye keep /tmp 1000\n"

    assert containers.run(containers.new(["id", "-u"], user="1000")) == 0
    assert capfd.readouterr().out == "1000\n"


def _wait_for_log(log: Path, line: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while line not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)


@needs_runtime
@pytest.mark.timeout(180)
def test_detached_exec_stop_delete(containers: Containers) -> None:
    runtime = containers.runtime
    store, rootfs = containers.world["store"], containers.world["rootfs"]
    cid = containers.new(["sh", "-c", "echo started; exec sleep 300"])
    assert rt.status(store, cid) == ("created", None)
    assert containers.run(cid, detach=True) == 0
    st = rt.state(runtime, cid)
    assert st is not None and st["status"] == "running"
    assert cid in {c["id"] for c in rt.list_containers(runtime)}
    assert rt.status(store, cid) == ("running", None)
    with pytest.raises(LayerctlError, match="already running"):
        containers.run(cid, detach=True)

    marker = f"/x-{cid}"
    assert rt.exec_(runtime, cid, ["touch", marker]) == 0
    assert (rootfs / marker.lstrip("/")).exists()  # lands in the rootfs
    assert rt.exec_(runtime, cid, ["sh", "-c", "exit 5"]) == 5
    assert rt.exec_(runtime, cid, ["sh", "-c", "test $(id -u) = 1001"], user="alice",
                    rootfs=str(rootfs)) == 0
    log = Path(rt.log_path(store, cid))
    _wait_for_log(log, "started\n")
    assert log.read_text() == "started\n"

    t0 = time.monotonic()
    rt.stop(runtime, cid, timeout=1, bundle_dir=containers.bundle(cid))
    assert time.monotonic() - t0 < 100  # not the 300 s of its sleep (load varies)
    assert rt.state(runtime, cid) is None
    # pid 1 ignores SIGTERM it has no handler for, so it took the SIGKILL.
    assert rt.status(store, cid) == ("exited", 137)
    with pytest.raises(LayerctlError, match="not running"):
        rt.exec_(runtime, cid, ["true"])

    # start again (same bundle), then stop with SIGTERM honoured
    rt.make_bundle(containers.bundle(cid), str(rootfs), {"config": {}}, args=[
        "sh", "-c", "trap 'exit 7' TERM; echo trapping; while :; do sleep 0.1; done"],
        env=[], hostname=cid)
    assert containers.run(cid, detach=True) == 0
    assert rt.status(store, cid) == ("running", None)
    # pid 1 ignores a SIGTERM that comes before its trap is set (a slow start): wait
    _wait_for_log(log, "trapping\n")
    rt.stop(runtime, cid, timeout=30, bundle_dir=containers.bundle(cid))
    assert rt.status(store, cid) == ("exited", 7)
    rt.delete(runtime, cid, force=True)  # nothing left: a no-op


@needs_runtime
@pytest.mark.timeout(120)
def test_detached_short_lived_and_failing(containers: Containers) -> None:
    store = containers.world["store"]
    cid = containers.new(["sh", "-c", "echo done; exit 4"])
    assert containers.run(cid, detach=True) == 0
    deadline = time.monotonic() + 60
    while rt.status(store, cid)[0] != "exited" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert rt.status(store, cid) == ("exited", 4)
    assert Path(rt.log_path(store, cid)).read_text() == "done\n"

    cid = containers.new(["/no/such/program"])
    with pytest.raises(LayerctlError, match="failed to start"):
        containers.run(cid, detach=True)
    assert rt.status(store, cid)[0] == "exited"


@needs_runtime
@pytest.mark.timeout(120)
def test_isolation(containers: Containers, capfd: pytest.CaptureFixture, tmp_path: Path) -> None:
    store, rootfs = containers.world["store"], containers.world["rootfs"]
    name = f"layerctl-marker-{uuid.uuid4().hex}"
    host_marker = Path("/tmp") / name
    host_marker.write_text("host")
    try:
        script = (
            f"test -e /tmp/{name} && echo SEES-HOST-TMP; "
            f"test -e {store.root} && echo SEES-STORE; "
            f"test -e {rootfs} && echo SEES-ROOTFS-PATH; "
            f"echo inside > /tmp/{name}.in; "
            "cat /proc/1/cmdline | tr '\\0' ' '; echo; hostname; ls /sys/class/net"
        )
        cid = containers.new(["sh", "-c", script])
        capfd.readouterr()
        assert containers.run(cid) == 0
        out = capfd.readouterr().out.splitlines()
        assert out == [f"sh -c {script} ", cid, "lo"]
        assert not Path(f"/tmp/{name}.in").exists()
        assert (rootfs / "tmp" / f"{name}.in").read_text() == "inside\n"
        assert host_marker.read_text() == "host"
    finally:
        host_marker.unlink()
        (rootfs / "tmp" / f"{name}.in").unlink(missing_ok=True)


@needs_runtime
@pytest.mark.timeout(120)
def test_interactive_tty(containers: Containers) -> None:
    cid = containers.new(["sh"], tty=True)
    code = (
        "import sys; from layerctl import runtime as rt; "
        "r = rt.Runtime(sys.argv[1], sys.argv[2]); "
        "sys.exit(rt.run(r, sys.argv[3], sys.argv[4], tty=True))"
    )
    argv = [sys.executable, "-c", code, containers.runtime.binary, containers.runtime.root,
            cid, containers.bundle(cid)]
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    pid, fd = on_a_pty(argv, env)
    out = b""
    try:
        os.write(fd, b"echo $((6*7))\n")
        out = read_until(fd, b"42\r\n", 30)
        assert b"42\r\n" in out, out  # the echoed command line reads "$((6*7))"
        os.write(fd, b"tty; exit 9\n")
        out += read_until(fd, b"\x00never", 30)
        assert b"/dev/pts/0" in out, out
    finally:
        code = reap(pid, fd, 10)
    assert code == 9, out


# -- the CLI: run, exec, stop, start, logs ------------------------------------------


@needs_runtime
@pytest.mark.timeout(300)
def test_cli_run_exec_stop_start_logs(cli_deb) -> None:
    cli = cli_deb
    r = cli("run", "--rm", "-e", "A=1", "-w", "/etc", "deb", "sh", "-c", 'echo "$A $(pwd)"; exit 3',
            check=False)
    assert (r.returncode, r.stdout) == (3, "1 /etc\n"), r.stderr
    assert container_names(cli) == []  # --rm removed it

    r = cli("run", "-d", "--name", "bg", "deb", "sh", "-c", "echo out; echo err >&2; sleep 300")
    assert len(r.stdout.strip()) == 64
    assert cli("exec", "bg", "sh", "-c", "echo hi > /made; id -un").stdout == "root\n"
    assert cli("exec", "-u", "nobody", "bg", "id", "-u").stdout == "65534\n"
    assert cli("exec", "bg", "sh", "-c", "exit 6", check=False).returncode == 6
    deadline = time.monotonic() + 60
    while len(cli("logs", "bg").stdout.split()) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    # stdout and stderr reach the log through separate pipes: their order may vary.
    assert sorted(cli("logs", "bg").stdout.splitlines()) == ["err", "out"]
    assert "A /made" in cli("status", "bg").stdout
    assert cli("stop", "-t", "1", "bg").stdout == "bg\n"
    r = cli("exec", "bg", "true", check=False)
    assert r.returncode != 0 and "not running" in r.stderr
    # returns, since it is not running
    assert sorted(cli("logs", "-f", "bg").stdout.splitlines()) == ["err", "out"]

    assert cli("start", "bg").stdout == "bg\n"
    assert cli("exec", "bg", "cat", "/made").stdout == "hi\n"
    cli("stop", "-t", "0", "bg")

    r = cli("run", "-t", "deb", "true", check=False)
    assert r.returncode != 0 and "not a TTY" in r.stderr
    r = cli("run", "deb", "/no/such/thing", check=False)
    assert r.returncode != 0 and "/no/such/thing" in r.stderr  # names what is missing
    assert "no such file or directory" in r.stderr.lower()


@needs_runtime
@pytest.mark.timeout(300)
def test_cli_run_interactive_tty(cli_deb, store_root: Path) -> None:
    argv = [sys.executable, "-m", "layerctl", "run", "-it", "--rm", "deb", "sh"]
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), LAYERCTL_ROOT=str(store_root))
    pid, fd = on_a_pty(argv, env)
    out = b""
    try:
        os.write(fd, b"echo $((6*7))\n")
        out = read_until(fd, b"42\r\n", 60)
        assert b"42\r\n" in out, out
        os.write(fd, b"exit 4\n")
        out += read_until(fd, b"\x00never", 30)
    finally:
        code = reap(pid, fd, 20)
    assert code == 4, out
