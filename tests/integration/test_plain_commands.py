"""The plain commands (cli/entry.py): `layerctl status C`, `ps`, `images` and
`waste TARGET` without options, the loop's `create`, `mount` and `commit` and `load`
with their few plain options, run their body without click, and print exactly what the
click-parsed form prints (the same body: `--root` forces the click form).

Start-up is asserted on the modules a run leaves in sys.modules, never on time.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from layerctl.store.repo import Store
from tests.layerhelpers import cli_env, commit_edit, import_dir, put_file
from tests.paths import REPO_ROOT

# Runs the real entry point, then lists what the process imported (also after an exit).
PROBE = """
import sys
try:
    from layerctl.cli.entry import main
    main(sys.argv[1:])
finally:
    sys.stderr.write("\\nMODULES " + " ".join(sorted(sys.modules)) + "\\n")
"""


def _probe(store_root: Path, *args: str, env: dict | None = None
           ) -> tuple[subprocess.CompletedProcess, set[str]]:
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, cwd=store_root.parent,
                          env={**cli_env(store_root, REPO_ROOT), **(env or {})})
    head, _, mods = proc.stderr.rpartition("\nMODULES ")
    proc.stderr = head
    return proc, set(mods.split())


@pytest.fixture
def image(store: Store, store_root: Path, tmp_path: Path, cli) -> str:
    """base (a 4000-byte file), then two layers that rewrite and delete it; a mounted
    container with two pending changes."""
    src = tmp_path / "src"
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "big").write_bytes(b"b" * 4000)
    (src / "etc" / "hostname").write_bytes(b"box\n")
    (src / "var/lib/dpkg/info").mkdir(parents=True)  # waste reads who owns etc/big
    (src / "var/lib/dpkg/status").write_bytes(
        b"Package: big\nStatus: install ok installed\nVersion: 1\nArchitecture: all\n\n")
    (src / "var/lib/dpkg/info/big.list").write_bytes(b"/etc\n/etc/big\n")
    import_dir(store, src, "pl:base")
    commit_edit(store, "pl:base", lambda e, w: put_file(e, w, b"etc/big", b"c" * 3000),
                "pl:mid", "rewrite big")
    commit_edit(store, "pl:mid", lambda e, w: e.delete(b"etc/big"), "pl:top", "drop big")
    cli("create", "--driver", "vfs", "--name", "c", "pl:top")
    root = Path(cli("mount", "c").stdout.strip())  # vfs: a directory, no kernel mount
    (root / "etc" / "hostname").write_bytes(b"other\n")
    (root / "etc" / "new").write_bytes(b"new\n")
    return "pl:top"


PLAIN_LINES = [("status", "c"), ("status",), ("ps",), ("images",), ("waste", "pl:top"),
               ("efficiency", "pl:top"), ("waste", "pl:mid")]


@pytest.mark.parametrize("args", PLAIN_LINES, ids=" ".join)
def test_plain_form_prints_what_click_prints_without_click(image, store_root, args):
    plain, mods = _probe(store_root, *args)
    parsed, parsed_mods = _probe(store_root, "--root", str(store_root), *args)
    assert "click" not in mods and "layerctl.cli.main" not in mods, args
    assert "click" in parsed_mods  # the comparison is with the click form
    # the two runs may straddle the image's first second: its age is worded apart
    assert (plain.returncode, _aged(plain.stdout), plain.stderr) == (
        parsed.returncode, _aged(parsed.stdout), parsed.stderr)
    assert plain.returncode == 0 and plain.stdout


def _aged(text: str) -> str:
    # Any age (a slow machine can take the image past its first minute between the
    # runs), and the column padding that follows the age's width.
    text = re.sub(r"(Less than a (second|minute)|\d+ (minute|hour)s?) ago", "(age)", text)
    return re.sub(r" {2,}", "  ", text)


@pytest.mark.parametrize("dive_ci", [
    "rules:\n  lowestEfficiency: 0\n  highestUserWastedPercent: disabled\n",
    "rules:\n  lowestEfficiency: 0.99\n"], ids=["passing rules", "failing rule"])
def test_plain_waste_under_ci_is_the_click_gate(image, store_root, tmp_path, dive_ci):
    """CI=true turns `waste` into the gate either way: same lines, same exit code."""
    (store_root.parent / ".dive-ci").write_text(dive_ci)  # the probes' working dir
    plain, mods = _probe(store_root, "waste", "pl:top", env={"CI": "true"})
    parsed, _ = _probe(store_root, "--root", str(store_root), "waste", "pl:top",
                       env={"CI": "true"})
    assert "click" not in mods
    assert "Result:" in plain.stdout
    assert (plain.returncode, plain.stdout, plain.stderr) == (
        parsed.returncode, parsed.stdout, parsed.stderr)
    assert plain.returncode == (1 if "0.99" in dive_ci else 0)


def test_plain_waste_has_the_figures_and_reads_packages_without_dulwich(image, store_root):
    plain, mods = _probe(store_root, "waste", "pl:top")
    # 4000 (base copy) + 3000 (rewrite) shipped, both wasted: the top shows neither
    assert "wastedBytes: 7000 bytes" in plain.stdout
    row = next(line for line in plain.stdout.splitlines() if line.endswith("/etc/big"))
    assert "big 1" in row  # the package column: dpkg's status and list were read
    # blobs are read through store/packs.py; dulwich's object store costs ~10 ms to import
    assert not sorted(m for m in mods if m.split(".")[0] in ("dulwich", "click", "textual"))


def test_plain_waste_imports_no_dataclasses_first_or_kept(image, store_root):
    """`waste` of committed layers, first with nothing kept (it diffs the layers and
    reads the package lists) and then from the kept analysis: neither run imports
    dataclasses (with inspect, ast, dis, tokenize: ~4 ms of the run) nor the blame
    analysis (the package readers look paths up through store/pathlookup.py)."""
    import shutil

    for kind in ("changes", "dpkg-owners", "waste", "owners"):
        shutil.rmtree(store_root / "cache" / kind, ignore_errors=True)
    (store_root / "cache" / "layer-sizes.json").unlink(missing_ok=True)
    for run in ("first", "kept"):
        plain, mods = _probe(store_root, "waste", "pl:top")
        assert plain.returncode == 0 and "big 1" in plain.stdout, (run, plain.stderr)
        hits = sorted(m for m in mods if m in ("dataclasses", "inspect",
                                               "layerctl.insight.blame"))
        assert not hits, f"{run} `layerctl waste pl:top` imports {hits}"
    assert list((store_root / "cache" / "waste").iterdir())  # the second run read it


@pytest.mark.parametrize("args", [("status", "nosuch"), ("waste", "nosuch:1"),
                                  ("status", "a", "b")], ids=" ".join)
def test_plain_errors_are_the_same_one_line(image, store_root, args):
    plain, mods = _probe(store_root, *args)
    parsed, _ = _probe(store_root, "--root", str(store_root), *args)
    assert plain.returncode == parsed.returncode != 0
    assert plain.stderr == parsed.stderr
    assert plain.stderr.startswith(("layerctl: ", "Usage: ")), plain.stderr
    assert "Traceback" not in plain.stderr


def _ids(text: str) -> str:
    return re.sub(r"[0-9a-f]{12,64}", "(id)", text)


def test_the_loop_plain_does_what_click_does_without_click(image, store_root):
    """create, mount and commit with their plain options: the same lines, ids aside,
    and the same effects (a container each, a layer each, the tag moved)."""
    runs = {}
    for way, root in (("plain", ()), ("click", ("--root", str(store_root)))):
        name = f"loop-{way}"
        procs = []
        for args in (("create", "--name", name, "pl:top"), ("mount", name)):
            procs.append(_probe(store_root, *root, *args))
        merged = Path(procs[-1][0].stdout.strip())
        (merged / "etc" / "hostname").write_bytes(way.encode())
        procs.append(_probe(store_root, *root, "commit", "-a", "Jane <j@x>", "-m", "one",
                            name, f"pl:{way}"))
        (merged / "etc" / "hostname").write_bytes(b"again")
        procs.append(_probe(store_root, *root, "commit", "--quiet", name))
        runs[way] = procs
    for plain, parsed in zip(runs["plain"], runs["click"], strict=True):
        assert "click" not in plain[1] and "layerctl.cli.main" not in plain[1]
        assert "dulwich.config" not in plain[1]  # the reflog's committer: identity.py
        assert "click" in parsed[1]
        out = (plain[0].returncode, _ids(plain[0].stdout.replace("loop-plain", "N")),
               _ids(plain[0].stderr))
        assert out == (parsed[0].returncode, _ids(parsed[0].stdout.replace("loop-click", "N")),
                       _ids(parsed[0].stderr))
        assert plain[0].returncode == 0 and plain[0].stdout, plain[0].stderr
    store = Store(str(store_root))
    try:
        from layerctl.images import resolve
        from layerctl.store.layers import read_layer

        for way in ("plain", "click"):
            layer = read_layer(store, resolve(store, f"pl:{way}"))
            assert (layer.author.split(" <")[0], layer.message.strip()) == ("Jane", "one")
    finally:
        store.close()


def test_plain_load_does_what_click_does_without_click(image, store_root, tmp_path, cli):
    """`load -i FILE [-q]` into a fresh store: the same lines (the read rate aside), the
    same images, and no click, nor dulwich's repository or config, in the process."""
    archive = tmp_path / "pl.tar"
    cli("save", "-o", str(archive), "pl:top", "pl:mid")
    seen = {}
    for quiet in ((), ("-q",)):
        for way in ("plain", "click"):
            root = tmp_path / f"load-{way}-{len(quiet)}"
            forced = ("--root", str(root)) if way == "click" else ()
            proc, mods = _probe(store_root, *forced, "load", *quiet, "-i", str(archive),
                                env={"LAYERCTL_ROOT": str(root)})
            assert proc.returncode == 0, proc.stderr
            images = cli("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}",
                         env={"LAYERCTL_ROOT": str(root)}).stdout
            seen[way] = (proc.stdout, re.sub(r"Read .*", "Read", proc.stderr), images)
            if way == "plain":
                assert not {"click", "layerctl.cli.main", "dulwich.repo",
                            "dulwich.config"} & mods, sorted(mods)
        assert seen["plain"] == seen["click"]
        assert "Loaded image: pl:top" in seen["plain"][0]


@pytest.mark.parametrize("args", [("create", "--name", "c", "pl:top"), ("mount", "nosuch"),
                                  ("commit", "nosuch"), ("commit", "c", "bad//tag"),
                                  ("create", "--name", "", "pl:top"),
                                  ("load", "-i", "/nonexistent.tar"),
                                  ("load", "-q", "-i", "/dev/null")], ids=" ".join)
def test_the_loop_errors_are_the_same_one_line(image, store_root, args):
    plain, mods = _probe(store_root, *args)
    parsed, _ = _probe(store_root, "--root", str(store_root), *args)
    assert "click" not in mods
    assert plain.returncode == parsed.returncode != 0
    assert plain.stderr == parsed.stderr
    assert plain.stderr.startswith("layerctl: ") and plain.stderr.count("\n") == 1


@pytest.mark.parametrize("args", [("status", "--json", "c"), ("waste", "pl:top", "--json"),
                                  ("ps", "-a"), ("images", "x"), ("status", "-h"),
                                  ("create", "--driver", "vfs", "pl:top"),
                                  ("create", "--name", "a", "--name", "b", "pl:top"),
                                  ("commit", "-m=x", "c"), ("commit", "-m", "-x", "c"),
                                  ("commit", "c", "--", "etc"), ("mount", "-h"),
                                  ("load", "-i", "-"), ("load", "--input=x.tar")],
                         ids=" ".join)
def test_options_and_extra_words_go_to_click(image, store_root, args):
    proc, mods = _probe(store_root, *args)
    assert "layerctl.cli.main" in mods  # click parsed it (a usage error for `images x`)
    assert "Traceback" not in proc.stderr


def test_plain_output_to_a_closed_pipe_exits_quietly(image, store_root):
    """A reader that goes away (`layerctl waste X | head -1`): exit 141, no traceback."""
    env = cli_env(store_root, REPO_ROOT)
    with subprocess.Popen([sys.executable, "-m", "layerctl", "waste", "pl:top"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) as p:
        p.stdout.close()  # before it writes anything
        err = p.stderr.read().decode()
        code = p.wait()
    assert code == 141, err
    assert err == ""


# What `status`, `ps` and `images` must not import (issue 11, start-up): dataclasses
# pulls inspect, ast, dis, tokenize (~4.5 ms); shutil pulls bz2 and lzma; tempfile
# random. layerctl/record.py replaces the dataclasses on these paths; shutil, tempfile
# and random are imported where a container is created or removed.
NOT_AT_STARTUP = ("dataclasses", "inspect", "shutil", "tempfile", "random", "datetime")
# `ps` reads a container's run/exit records (runtime/records.py, runtime/process.py):
# the runtime's finder, bundle writer and supervisor, and subprocess, are for `run`.
NOT_FOR_PS = ("layerctl.runtime.supervise", "layerctl.runtime.spec",
              "layerctl.runtime.find", "layerctl.runtime.control", "subprocess")


def test_read_commands_import_no_heavy_stdlib(image, store, store_root):
    from layerctl.containers.state import resolve
    from layerctl.runtime import bundle_path
    from layerctl.runtime.records import record_exit

    # an exit record (the supervisor's own writer): `ps` shows "Exited (3)" from it
    bundle = bundle_path(store, resolve(store, "c").id)
    Path(bundle).mkdir(parents=True)
    record_exit(bundle, 3)
    for args in (("status", "c"), ("status",), ("ps",), ("images",)):
        proc, mods = _probe(store_root, *args)
        assert proc.returncode == 0 and proc.stdout, (args, proc.stderr)
        hits = sorted(m for m in mods if m in NOT_AT_STARTUP)
        assert not hits, f"`layerctl {' '.join(args)}` imports {hits}"
        if args == ("ps",):
            assert "Exited (3)" in proc.stdout  # the row read the record
            assert "layerctl.runtime.process" in mods
            assert not sorted(m for m in mods if m in NOT_FOR_PS), sorted(
                m for m in mods if m in NOT_FOR_PS)
        if args == ("images",):
            assert "pl" in proc.stdout and "hashlib" in mods  # it computed image ids


def test_overlay_status_imports_no_dataclasses(image, cli, store_root):
    """The overlay driver's status (kernel mount, layer dirs) too; shutil comes in
    with containers/layerdirs.py, which imports it at module level."""
    cli("create", "--name", "o", "pl:top")
    try:
        root = Path(cli("mount", "o").stdout.strip())
        (root / "etc" / "hostname").write_bytes(b"overlay\n")
        for args in (("status", "o"), ("ps",)):
            proc, mods = _probe(store_root, *args)
            assert proc.returncode == 0 and "o" in proc.stdout, (args, proc.stderr)
            allowed = ("shutil",) if args[0] == "status" else ()
            hits = sorted(m for m in mods if m in NOT_AT_STARTUP and m not in allowed)
            assert not hits, f"`layerctl {' '.join(args)}` imports {hits}"
    finally:
        cli("rm", "-f", "o")


def test_the_collector_is_paused_for_plain_reads_only(monkeypatch, tmp_path):
    """A plain read runs with the cyclic collector paused; the loop's writers (a commit
    of many files makes futures and callbacks in cycles) keep it, and it is back on
    after either."""
    import gc

    import layerctl.cli.loop as loop
    import layerctl.cli.views as views
    from layerctl.cli import entry

    seen = {}
    monkeypatch.setattr(loop, "mount", lambda store, c: seen.update(mount=gc.isenabled()))
    monkeypatch.setattr(views, "show_ps", lambda store: seen.update(ps=gc.isenabled()))
    monkeypatch.setenv("LAYERCTL_ROOT", str(tmp_path / "store"))
    entry.main(["mount", "x"])
    entry.main(["ps"])
    assert seen == {"mount": True, "ps": False}
    assert gc.isenabled()
