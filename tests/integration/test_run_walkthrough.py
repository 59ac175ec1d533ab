"""Issue 5's acceptance: the docker-commit walkthrough through a real OCI runtime."""

import os
import select
import shutil
import subprocess
import sys
import time

import pytest

from tests.layerhelpers import container_names
from tests.paths import REPO_ROOT
from tests.ptyhelpers import on_a_pty, read_until, reap

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not (shutil.which("runc") or shutil.which("crun")),
                       reason="crun or runc not installed"),
    pytest.mark.timeout(600),
]


def test_docker_commit_walkthrough_while_running(cli_deb):
    cli = cli_deb
    cli("run", "--name", "prep", "deb", "sh", "-c",
        "mkdir -p /usr/local/tomcat/webapps.dist/ROOT /usr/local/tomcat/webapps && "
        "echo '<h1>hi</h1>' > /usr/local/tomcat/webapps.dist/ROOT/index.html && "
        "echo docs > /usr/local/tomcat/webapps.dist/README")
    cli("commit", "-m", "tomcat base", "prep", "tomcat:9")
    cli("run", "-d", "--name", "tomcat01", "tomcat:9", "sleep", "600")
    assert "Up" in cli("ps").stdout
    cli("exec", "tomcat01", "sh", "-c",
        "cd /usr/local/tomcat && cp -r webapps.dist/* webapps")
    status = cli("status", "tomcat01").stdout
    assert "A /usr/local/tomcat/webapps/ROOT/index.html" in status
    # Commit while the process still runs, Docker's argument order.
    cli("commit", "-a", "kuangshen", "-m", "add webapps app", "tomcat01", "tomcat02:1.0")
    assert "Up" in cli("ps").stdout
    assert cli("status", "tomcat01").stdout.strip() == ""
    listing = cli("run", "--rm", "tomcat02:1.0", "ls", "/usr/local/tomcat/webapps").stdout
    assert listing.split() == ["README", "ROOT"]
    log = cli("log", "-n", "1", "tomcat02:1.0").stdout
    assert "Author: kuangshen" in log and "add webapps app" in log
    assert "tomcat02" in cli("images").stdout
    # A running container is not removed or unmounted by accident.
    assert "running" in cli("rm", "tomcat01", check=False).stderr
    assert "running" in cli("umount", "tomcat01", check=False).stderr
    cli("rm", "-f", "tomcat01")
    assert "tomcat01" not in container_names(cli)


def test_exit_codes_propagate(cli_deb):
    assert cli_deb("run", "--rm", "deb", "sh", "-c", "exit 3", check=False).returncode == 3
    assert cli_deb("run", "--rm", "deb", "true").returncode == 0


def test_a_script_runs_containers_without_the_cli(cli_deb, store_root):
    # The run/exec/start/stop use case lives in the core (containers.process): the
    # TUI or a script drives a container's processes with no CLI in between.
    from layerctl.containers import list_containers
    from layerctl.containers.process import Process, exec_in, run, start, stop
    from layerctl.runtime import status
    from layerctl.store.repo import Store

    store = Store(str(store_root))
    try:
        c, code = run(store, "deb", Process(["sh", "-c", "echo hi > /made; exit 4"]),
                      name="scripted")
        assert code == 4
        assert "A /made" in cli_deb("status", "scripted").stdout
        c2, code = run(store, "deb", Process(["true"]), remove_after=True)
        assert code == 0 and c2.id not in {x.id for x in list_containers(store)}
        d, code = run(store, "deb", Process(["sleep", "600"]), name="bg", detach=True)
        assert code is None and status(store, d.id)[0] == "running"
        assert exec_in(store, "bg", Process(["sh", "-c", "test -f /etc/debian_version"])) == 0
        assert exec_in(store, "bg", Process(["sh", "-c", "exit 7"])) == 7
        stop(store, "bg", timeout=1)
        assert status(store, d.id)[0] != "running"
        assert start(store, "scripted", attach=True) == 4  # its last command again
    finally:
        store.close()


def test_interactive_writes_show_in_status_watch(cli_deb, store_root):
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), LAYERCTL_ROOT=str(store_root))
    argv = [sys.executable, "-m", "layerctl", "run", "-it", "--name", "live", "deb", "sh"]
    pid, fd = on_a_pty(argv, env)
    watcher = None
    try:
        # The terminal echoes what we type at once: wait for output only the shell makes.
        os.write(fd, b"echo $((40+2))ready\n")
        assert b"42ready" in read_until(fd, b"42ready", 60)
        watcher = subprocess.Popen(
            [sys.executable, "-m", "layerctl", "status", "--watch", "live"], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        # Nothing tells when the watch's observer runs, and a write before it is never
        # reported (2 s of start-up was not always enough on a loaded machine): write
        # again each second until the watch shows the file (each write is an event).
        seen = b""
        deadline = time.monotonic() + 60
        os.set_blocking(watcher.stdout.fileno(), False)
        while b"/hello-from-tty" not in seen and time.monotonic() < deadline:
            os.write(fd, b"echo hello >> /hello-from-tty\n")
            again = time.monotonic() + 1
            while b"/hello-from-tty" not in seen and time.monotonic() < again:
                select.select([watcher.stdout], [], [], 0.2)
                seen += watcher.stdout.read() or b""
        assert b"A /hello-from-tty" in seen, seen
        os.write(fd, b"exit 0\n")
        read_until(fd, b"\x00never", 10)
    finally:
        if watcher is not None:
            watcher.kill()
            watcher.wait()
        reap(pid, fd, 0)
