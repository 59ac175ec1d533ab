"""Smoke tests of the real program in a real terminal: `python -m layerctl tui` and
`layerctl demo` under tmux (160x48), typing keys and reading the screen back."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid

import pytest
from rich.cells import cell_len

from layerctl import demo
from layerctl.store.repo import Store
from tests.paths import REPO_ROOT

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed")

# A tmux server of the tests' own, without the user's ~/.tmux.conf (a status line
# turned off, another default size or shell would change what the pane shows).
TMUX = ["tmux", "-L", "layerctl-tests", "-f", os.devnull]


class Terminal:
    """One detached tmux session running a command."""

    def __init__(self, command: list[str], env: dict[str, str], width=160, height=48) -> None:
        self.name = f"layerctl-test-{uuid.uuid4().hex[:8]}"
        self.width = width
        exports = " ".join(f"{k}={_quote(v)}" for k, v in env.items())
        # COLUMNS/LINES from the test process would override the pane's real size
        shell = f"cd {_quote(str(REPO_ROOT))} && env -u COLUMNS -u LINES {exports} " + " ".join(
            _quote(c) for c in command)
        subprocess.run([*TMUX, "new-session", "-d", "-s", self.name, "-x", str(width),
                        "-y", str(height), shell], check=True)

    def screen(self) -> str:
        out = subprocess.run([*TMUX, "capture-pane", "-p", "-t", self.name],
                             capture_output=True, text=True)
        return out.stdout

    def wait_for(self, text: str, timeout: float = 60.0) -> float:
        """Seconds until `text` is on screen (bounded generously: a process start, the
        demo's build and Textual's first paint take seconds on a loaded machine)."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if text in self.screen():
                return time.monotonic() - start
            time.sleep(0.05)
        raise AssertionError(f"{text!r} never appeared; the screen:\n{self.screen()}")

    def keys(self, *keys: str) -> None:
        subprocess.run([*TMUX, "send-keys", "-t", self.name, *keys], check=True)

    def alive(self) -> bool:
        return subprocess.run([*TMUX, "has-session", "-t", self.name],
                              capture_output=True).returncode == 0

    def kill(self) -> None:
        subprocess.run([*TMUX, "kill-session", "-t", self.name], capture_output=True)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


@pytest.fixture
def env(tmp_path, store_root):
    return {
        "LAYERCTL_ROOT": str(store_root),
        "LAYERCTL_CONFIG": str(tmp_path / "config.toml"),
        "LAYERCTL_AUTHOR": "王芳 <wang.fang@example.com>",
        "PYTHONPATH": str(REPO_ROOT),
        "TERM": "xterm-256color",
        "LANG": "C.UTF-8",
    }


@pytest.fixture
def terminals():
    started: list[Terminal] = []
    yield started
    for t in started:
        t.kill()


def test_demo_opens_stages_and_commits(env, terminals, store_root):
    t = Terminal([sys.executable, "-m", "layerctl", "demo", "--theme", "light"], env)
    terminals.append(t)
    t.wait_for("Layer 1: files 1-3")
    t.wait_for("/notes.txt")
    screen = t.screen()
    # wide characters: every line is exactly the terminal's width in cells
    assert "第二层: files 4-6" in screen and "张伟" in screen
    assert all(cell_len(line) <= t.width for line in screen.splitlines())
    wide = next(line for line in screen.splitlines() if "第二层" in line)
    assert cell_len(wide) == t.width
    t.keys("Tab")  # to the Changes pane
    time.sleep(0.3)
    t.keys("Space")
    t.wait_for("1 of 1 staged")
    t.keys("c")
    t.wait_for("Commit container layerctl-demo")
    t.keys("-l", "notes from the demo")
    t.wait_for("notes from the demo")
    t.keys("C-s")
    t.wait_for("Commit landed")
    t.wait_for("notes from the d")  # the new layer heads the stack
    t.keys("q")
    deadline = time.monotonic() + 60
    while t.alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    store = Store(str(store_root))
    try:
        from layerctl.containers import api
        from layerctl.store.layers import read_layer

        layer = read_layer(store, store.ref(api.resolve(store, demo.CONTAINER).ref))
        assert layer.summary == "notes from the demo"
        assert layer.author == "王芳 <wang.fang@example.com>"
    finally:
        store.close()


@pytest.mark.slow
def test_first_paint_on_the_debian_image(env, terminals, store_root, debian_rootfs):
    """The program starts and shows the Debian image's files and its size (printed:
    the time from the process start until the first file names are on the screen)."""
    from layerctl.images import chain, image_size, parse_name
    from layerctl.importer import import_directory
    from layerctl.words import human_size

    store = Store(str(store_root))
    try:
        layer_id = import_directory(store, str(debian_rootfs), parse_name("debian:12"),
                                    "T <t@x>", "deb")
        size = human_size(image_size(store, chain(store, layer_id)))  # as `images` says
    finally:
        store.close()
    t = Terminal([sys.executable, "-m", "layerctl", "tui", "debian:12"], env)
    terminals.append(t)
    elapsed = t.wait_for("etc/")
    print(f"first paint (process start to files on screen): {elapsed * 1000:.0f} ms")
    assert "boot/" in t.screen() and size in t.screen()
    # A generous bound that catches a UI waiting on something unbounded (a hang, a
    # walk of every layer); the first-paint figure printed above is the measurement.
    # Generous for a loaded 2-core CI machine too, where a start-up takes seconds.
    assert elapsed < 30, f"first paint took {elapsed:.2f}s"
    t.keys("/")  # search the image's names
    t.wait_for("search names")
    t.keys("-l", "passwd")
    t.keys("Enter")
    t.wait_for("/usr/bin/passwd")
    t.keys("q")
