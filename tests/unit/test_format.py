"""`--format` on images, ps, history and inspect: Docker's Go-template fields, `{{json .}}`,
the `table` prefix, functions, and template errors as one line with exit 1."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

IMAGE_KEYS = {"Containers", "CreatedAt", "CreatedSince", "Digest", "ID", "Repository",
              "SharedSize", "Size", "Tag", "UniqueSize", "VirtualSize"}
PS_KEYS = {"Command", "CreatedAt", "ID", "Image", "Labels", "LocalVolumes", "Mounts", "Names",
           "Networks", "Ports", "RunningFor", "Size", "State", "Status"}
HISTORY_KEYS = {"Comment", "CreatedAt", "CreatedBy", "CreatedSince", "ID", "Size"}
GO_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+0000 UTC$")
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


@pytest.fixture
def known(cli, tmp_path: Path):
    """fmt:base (one 1000-byte file) and fmt:1 (adds a 6-byte file, with Env, Cmd and a
    label), committed from the container c1, which stays (vfs, not mounted)."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "one").write_bytes(b"1" * 1000)
    cli("import", src, "fmt:base", "-m", "base layer")
    cli("create", "--driver", "vfs", "--name", "c1", "fmt:base")
    try:
        merged = json.loads(cli("inspect", "c1").stdout)[0]["GraphDriver"]["Data"]["MergedDir"]
        Path(merged, "new").write_bytes(b"hello\n")
        cli("commit", "-c", "ENV GREETING=hi", "-c", 'CMD ["/bin/echo","hello"]',
            "-c", "LABEL team=core", "-m", "add file", "c1", "fmt:1")
        yield cli
    finally:
        cli("rm", "-f", "c1", check=False)


def _one_line_error(r) -> str:
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert r.stdout == ""
    return lines[0]


def test_images_every_field(known):
    cli = known
    out = cli("images", "--format", "{{json .}}").stdout
    rows = [json.loads(line) for line in out.splitlines()]
    assert {r["Tag"]: set(r) for r in rows} == {"1": IMAGE_KEYS, "base": IMAGE_KEYS}
    row = next(r for r in rows if r["Tag"] == "1")
    full_id = json.loads(cli("inspect", "fmt:1").stdout)[0]["Id"]
    assert row["ID"] == full_id[7:19]
    assert row["Repository"] == "fmt"
    assert row["Size"] == row["VirtualSize"] == "1.01kB"  # 1000 + 6 bytes, the whole image
    assert row["Digest"] == "<none>"
    assert row["Containers"] == row["SharedSize"] == row["UniqueSize"] == "N/A"
    assert GO_TIME.match(row["CreatedAt"]), row["CreatedAt"]
    assert row["CreatedSince"].endswith("ago")
    for key in IMAGE_KEYS - {"CreatedSince"}:  # each field alone: the value {{json .}} holds
        out = cli("images", "--format", f"{{{{.Tag}}}}={{{{.{key}}}}}").stdout.splitlines()
        assert f"1={row[key]}" in out, (key, out)
    assert cli("images", "--no-trunc", "--format", "{{.ID}}").stdout.split()[0].startswith(
        "sha256:")
    assert full_id in cli("images", "--no-trunc", "--format", "{{.ID}}").stdout.split()
    assert set(cli("images", "-q").stdout.split()) == {r["ID"] for r in rows}


def test_history_every_field(known):
    cli = known
    out = cli("history", "fmt:1", "--format", "{{json .}}").stdout.splitlines()
    rows = [json.loads(line) for line in out]
    assert [set(r) for r in rows] == [HISTORY_KEYS, HISTORY_KEYS]
    top, base = rows
    assert (top["Size"], base["Size"]) == ("6B", "1kB")
    assert (top["Comment"], base["Comment"]) == ("add file", "base layer")
    assert top["CreatedBy"].startswith("layerctl commit c1")
    assert RFC3339.match(top["CreatedAt"]), top["CreatedAt"]
    layers = json.loads(cli("inspect", "fmt:1").stdout)[0]["Layerctl"]["Layers"]
    assert [r["ID"] for r in rows] == [layers[1][:12], layers[0][:12]]
    for key in HISTORY_KEYS - {"CreatedSince"}:  # (the relative time moves on)
        assert cli("history", "fmt:1", "--format", f"{{{{.{key}}}}}").stdout.splitlines() == [
            top[key], base[key]], key
    assert cli("history", "--no-trunc", "-q", "fmt:1").stdout.split() == layers[::-1]


def test_ps_every_field(known):
    cli = known
    row = json.loads(cli("ps", "-a", "--format", "{{json .}}").stdout)
    assert set(row) == PS_KEYS
    cid = json.loads(cli("inspect", "c1").stdout)[0]["Id"]
    assert row["ID"] == cid[:12]
    assert row["Image"] == "fmt:base"
    assert row["Command"] == '"/bin/echo hello"'
    assert row["Names"] == "c1"
    assert row["Labels"] == "team=core"
    assert (row["State"], row["Status"]) == ("created", "Created")
    assert GO_TIME.match(row["CreatedAt"]) and row["RunningFor"].endswith("ago")
    for key in PS_KEYS - {"RunningFor"}:
        out = cli("ps", "-a", "--format", f"{{{{.{key}}}}}").stdout
        assert out == row[key] + "\n", key
    assert cli("ps", "-a", "--format", '{{.Label "team"}}|{{.Label "none"}}').stdout == "core|\n"
    assert cli("ps", "-a", "--no-trunc", "--format", "{{.ID}}").stdout.strip() == cid
    assert cli("ps", "-a", "-q", "--no-trunc").stdout.strip() == cid
    assert cli("ps", "-a", "-q").stdout.strip() == cid[:12]


def test_inspect_nested_fields_and_json(known):
    cli = known
    assert cli("inspect", "-f", "{{.Config.Env}}", "fmt:1").stdout == "[GREETING=hi]\n"
    assert cli("inspect", "-f", '{{index .Config.Labels "team"}}', "fmt:1").stdout == "core\n"
    rootfs = json.loads(cli("inspect", "--format", "{{json .RootFS}}", "fmt:1").stdout)
    assert rootfs["Type"] == "layers" and len(rootfs["Layers"]) == 2
    assert cli("inspect", "-f", "{{.Size}} {{.Os}}", "fmt:1").stdout == "1006 linux\n"
    whole = json.loads(cli("inspect", "fmt:1").stdout)[0]
    assert json.loads(cli("inspect", "-f", "{{json .}}", "fmt:1").stdout) == whole
    # one line per target, an image and a container alike
    out = cli("inspect", "-f", "{{.Id}} {{json .Config.Cmd}}", "fmt:1", "c1").stdout
    image_line, container_line = out.splitlines()
    assert image_line == whole["Id"] + ' ["/bin/echo","hello"]'
    assert container_line.split()[0] == json.loads(cli("inspect", "c1").stdout)[0]["Id"]
    assert cli("inspect", "-f", "{{.GraphDriver.Name}}", "c1").stdout == "vfs\n"
    assert cli("inspect", "--format", "json", "fmt:1").stdout == cli("inspect", "fmt:1").stdout


def test_table_header_and_alignment(known):
    cli = known
    out = cli("images", "--format", r"table {{.Repository}}\t{{.Tag}}\t{{.Size}}").stdout
    lines = out.splitlines()
    # Docker's tabwriter: a column is its widest cell + 3 spaces, at least 10 wide; the
    # last column is not padded
    assert lines[0] == "REPOSITORY   TAG       SIZE"
    assert sorted(lines[1:]) == ["fmt          1         1.01kB", "fmt          base      1kB"]
    hist = cli("history", "fmt:1", "--format", "table {{.ID}}\t{{.Comment}}").stdout
    assert hist.splitlines()[0] == "IMAGE          COMMENT"
    ps = cli("ps", "-a", "--format", "table {{.Names}}\t{{.State}}\t{{.Command}}").stdout
    assert ps.splitlines() == ["NAMES     STATE     COMMAND",
                               'c1        created   "/bin/echo hello"']
    default = cli("images", "--format", "table").stdout.splitlines()
    assert default[0].startswith("REPOSITORY   TAG       IMAGE ID       CREATED   ")
    assert default[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert len(default) == 3


def test_functions(known):
    cli = known
    fmt = ('{{upper .Repository}}|{{lower "AbC"}}|{{.Tag | upper}}|'
           '{{join (split "a,b" ",") "-"}}|{{pad .Tag 1 1}}|{{json .Repository}}')
    lines = cli("images", "--format", fmt).stdout.splitlines()
    assert 'FMT|abc|1|a-b| 1 |"fmt"' in lines, lines
    out = cli("history", "fmt:1", "--format", "{{title .Comment}}|{{.Comment | upper}}").stdout
    assert out.splitlines()[0] == "Add File|ADD FILE"
    assert cli("inspect", "-f", '{{title "x-y z_w"}}', "fmt:1").stdout == "X-Y Z_w\n"
    out = cli("inspect", "-f", '{{join .Config.Env ","}}|{{len .RootFS.Layers}}', "fmt:1").stdout
    assert out == "GREETING=hi|2\n"
    assert cli("inspect", "-f", "{{println .Os}}x", "fmt:1").stdout == "linux\nx\n"
    assert cli("inspect", "-f", '{{truncate .Os 3}}{{printf "-%s-" .Os}}',
               "fmt:1").stdout == "lin-linux-\n"
    assert cli("ps", "-a", "--format", '{{(.Label "team")}}').stdout == "core\n"
    assert cli("inspect", "-f", "{{- .Os -}} {{/* a comment */}}", "fmt:1").stdout == "linux\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["images", "--format", "{{.Nope}}"],
         'template: :1: executing "" at <.Nope>: can\'t evaluate field Nope in type '
         "*formatter.ImageContext"),
        (["ps", "-a", "--format", "{{.Nope}}"],
         "can't evaluate field Nope in type *formatter.ContainerContext"),
        (["history", "fmt:1", "--format", "{{.Tag}}"],
         "can't evaluate field Tag in type *formatter.historyContext"),
        (["inspect", "-f", "{{.Config.Nope}}", "fmt:1"],
         'executing "" at <.Config.Nope>: map has no entry for key "Nope"'),
        (["inspect", "-f", "{{.Os.Name}}", "fmt:1"], "can't evaluate field Name in type string"),
        (["images", "--format", "{{.ID"], "template: :1: unclosed action"),
        (["images", "--format", "{{}}"], "template: :1: missing value for command"),
        (["images", "--format", "{{nope .ID}}"], 'template: :1: function "nope" not defined'),
        (["images", "--format", "{{range .ID}}{{end}}"], "is not supported"),
        (["images", "--format", "{{upper}}"], "wrong number of args for upper"),
        (["images", "--format", "{{join .ID 1}}"], "error calling join"),
        (["images", "--format", "{{(.ID}}"], "unclosed left paren"),
        (["images", "--format", "{{.ID)}}"], "unexpected"),
    ],
)
def test_template_errors_are_one_line(known, args, message):
    line = _one_line_error(known(*args, check=False))
    assert line.startswith("layerctl: template: ")
    assert message in line, line


def test_field_text_cannot_forge_a_line(cli, tmp_path: Path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"x")
    cli("import", src, "evil:1", "-m", "one\ntwo")
    out = cli("inspect", "-f", "{{.Comment}}", "evil:1").stdout
    assert out == "one\\ntwo\n"
    data = json.loads(cli("inspect", "-f", "{{json .}}", "evil:1").stdout)
    assert data["Comment"] == "one\ntwo"  # JSON carries the text as it is
