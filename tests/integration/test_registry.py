"""Registries: pull, push, login/logout against Debian's docker-registry on 127.0.0.1,
cross-checked with skopeo, umoci and podman (private storage in tmp)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from layerctl.images import chain, resolve
from layerctl.store.repo import Store
from tests.layerhelpers import commit_edit, import_dir, put_file
from tests.registryhelpers import CuttingProxy, Registry, serve, tar_bytes, write_layout
from tests.treecompare import assert_same_tree

pytestmark = pytest.mark.needs_tool("docker-registry", "skopeo", "openssl")


@pytest.fixture
def tls_registry(tmp_path, config_dir):
    with serve(tmp_path / "tls-registry", tls=True) as reg:
        yield reg


def skopeo(*args: str) -> str:
    out = subprocess.run(["skopeo", *args], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


def progress(stdout: str) -> list[str]:
    """The per-layer status lines, short ids replaced by L<n> in order of appearance."""
    ids: dict[str, str] = {}
    out = []
    for line in stdout.splitlines():
        head, sep, status = line.partition(": ")
        if sep and len(head) == 12 and all(c in "0123456789abcdef" for c in head):
            ids.setdefault(head, f"L{len(ids)}")
            out.append(f"{ids[head]}: {status}")
    return out


def _source_layout(tmp_path: Path) -> Path:
    """A 2-layer OCI layout made with umoci: a setuid file, then its deletion (a whiteout),
    an empty dir, a symlink and a hardlink."""
    layout = tmp_path / "umoci"
    subprocess.run(["umoci", "init", "--layout", layout], check=True)
    subprocess.run(["umoci", "new", "--image", f"{layout}:src"], check=True)
    for step in (1, 2):
        bundle = tmp_path / f"bundle{step}"
        subprocess.run(
            ["umoci", "unpack", "--image", f"{layout}:src", bundle], check=True,
            capture_output=True,
        )  # fmt: skip
        rootfs = bundle / "rootfs"
        if step == 1:
            (rootfs / "etc").mkdir()
            (rootfs / "etc" / "os-release").write_text("NAME=umoci-made\n")
            (rootfs / "bin").mkdir()
            (rootfs / "bin" / "tool").write_bytes(b"#!/bin/sh\necho tool\n")
            os.chmod(rootfs / "bin" / "tool", 0o4755)
            (rootfs / "bin" / "old").write_text("to be deleted\n")
            (rootfs / "var" / "empty").mkdir(parents=True)
        else:
            (rootfs / "bin" / "old").unlink()
            (rootfs / "etc" / "motd").write_text("hello\n")
            os.symlink("os-release", rootfs / "etc" / "release-link")
            os.link(rootfs / "bin" / "tool", rootfs / "bin" / "tool-link")
            os.chown(rootfs / "etc" / "motd", 1000, 1000)
        subprocess.run(["umoci", "repack", "--image", f"{layout}:src", bundle], check=True)
        shutil.rmtree(bundle)
    return layout


def _umoci_rootfs(layout: Path, tag: str, dest: Path) -> Path:
    subprocess.run(
        ["umoci", "unpack", "--image", f"{layout}:{tag}", dest], check=True, capture_output=True
    )
    return dest / "rootfs"


@pytest.mark.needs_root  # umoci unpack keeps ownership
@pytest.mark.needs_tool("umoci")
def test_pull_image_pushed_by_skopeo(cli, registry, tmp_path):
    layout = _source_layout(tmp_path)
    skopeo("copy", "-q", "--dest-tls-verify=false", f"oci:{layout}:src",
           f"docker://{registry.host}/team/app:1")  # fmt: skip
    ref = f"{registry.host}/team/app:1"
    out = cli("pull", ref).stdout
    lines = out.splitlines()
    assert lines[0] == "1: Pulling from team/app"
    assert progress(out) == [
        "L0: Pulling fs layer",
        "L1: Pulling fs layer",
        "L0: Downloading",
        "L0: Download complete",
        "L0: Pull complete",
        "L1: Downloading",
        "L1: Download complete",
        "L1: Pull complete",
    ]
    manifest = json.loads(skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{ref}"))
    digest = (
        "sha256:"
        + __import__("hashlib")
        .sha256(skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{ref}").encode())
        .hexdigest()
    )
    assert lines[-3:] == [
        f"Digest: {digest}",
        f"Status: Downloaded newer image for {ref}",
        ref,
    ]
    assert len(manifest["layers"]) == 2
    # entry by entry against umoci's unpack of the same image
    cli("checkout", ref, tmp_path / "co")
    assert_same_tree(_umoci_rootfs(layout, "src", tmp_path / "unpacked"), tmp_path / "co")
    # the layers carry their source DiffIDs and history
    config = json.loads(skopeo("inspect", "--config", "--tls-verify=false", f"docker://{ref}"))
    store = Store(os.environ["LAYERCTL_ROOT"])
    layers = chain(store, resolve(store, ref))
    assert [la.source_diff_id or la.diff_id for la in layers] == config["rootfs"]["diff_ids"]
    assert layers[-1].config["config"] == config["config"]
    store.close()
    assert cli("images").stdout.count(f"{registry.host}/team/app") == 1

    # a second pull transfers nothing but manifest and config
    again = cli("pull", ref).stdout
    assert progress(again) == ["L0: Already exists", "L1: Already exists"]
    assert f"Status: Image is up to date for {ref}" in again
    # the same layers under another name: already there, a new tag
    skopeo("copy", "-q", "--src-tls-verify=false", "--dest-tls-verify=false",
           f"docker://{ref}", f"docker://{registry.host}/other/name:2")  # fmt: skip
    other = cli("pull", f"{registry.host}/other/name:2").stdout
    assert progress(other) == ["L0: Already exists", "L1: Already exists"]
    assert f"Status: Downloaded newer image for {registry.host}/other/name:2" in other
    cli("fsck")


@pytest.fixture
def local_image(tmp_path, store_root):
    """app:1, two layers made by layerctl: a base tree and an edit by another author."""
    src = tmp_path / "src"
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "os-release").write_text("NAME=layerctl-made\n")
    (src / "usr" / "bin").mkdir(parents=True)
    (src / "usr" / "bin" / "su").write_bytes(b"\x7fELF-not-really\n")
    os.chmod(src / "usr" / "bin" / "su", 0o4755)
    os.link(src / "usr" / "bin" / "su", src / "usr" / "bin" / "su-link")
    os.symlink("../etc/os-release", src / "usr" / "os-release")
    (src / "tmp").mkdir()
    os.chmod(src / "tmp", 0o1777)
    store = Store(str(store_root))
    import_dir(store, src, "app:1")

    def edit(editor, writer):
        put_file(editor, writer, b"etc/motd", b"hello from layer 2\n", uid=1000, gid=1000)
        editor.delete(b"usr/os-release")

    commit_edit(store, "app:1", edit, name="app:1", message="motd", author="Jane <j@x.org>")
    layers = chain(store, resolve(store, "app:1"))
    store.close()
    return layers


@pytest.mark.needs_root  # umoci unpack keeps ownership
@pytest.mark.needs_tool("umoci")
def test_push_and_read_back_with_skopeo(cli, registry, local_image, tmp_path):
    ref = f"{registry.host}/pushed/app:1"
    out = cli("push", "app:1", ref).stdout
    lines = out.splitlines()
    assert lines[0] == f"The push refers to repository [{ref[:-2]}]"
    assert progress(out) == [
        "L0: Preparing", "L1: Preparing", "L0: Pushing", "L0: Pushed", "L1: Pushing",
        "L1: Pushed",
    ]  # fmt: skip
    assert lines[-1].startswith("1: digest: sha256:") and " size: " in lines[-1]
    digest = lines[-1].split()[2]
    # skopeo reads it; the DiffIDs are layerctl's
    config = json.loads(skopeo("inspect", "--config", "--tls-verify=false", f"docker://{ref}"))
    assert config["rootfs"]["diff_ids"] == [la.diff_id for la in local_image]
    layout = tmp_path / "copied"
    skopeo("copy", "-q", "--src-tls-verify=false", f"docker://{ref}", f"oci:{layout}:x")
    cli("checkout", "app:1", tmp_path / "co")
    assert_same_tree(_umoci_rootfs(layout, "x", tmp_path / "unpacked"), tmp_path / "co")

    # pushing again sends nothing and gives the same manifest
    again = cli("push", "app:1", ref).stdout
    assert progress(again) == [
        "L0: Preparing", "L1: Preparing", "L0: Layer already exists",
        "L1: Layer already exists",
    ]  # fmt: skip
    assert again.splitlines()[-1].split()[2] == digest
    # deterministic blobs: without the digest cache the layers are made again, and
    # the registry already has exactly those bytes
    shutil.rmtree(Path(os.environ["LAYERCTL_ROOT"]) / "cache")
    third = cli("push", "app:1", ref).stdout
    assert progress(third)[-2:] == ["L0: Layer already exists", "L1: Layer already exists"]

    # pulling back what we pushed: every layer is already here
    pulled = cli("pull", ref).stdout
    assert progress(pulled) == ["L0: Already exists", "L1: Already exists"]
    assert cli("inspect", ref).stdout.count(local_image[-1].id) >= 1


def test_save_gzip_and_push_give_a_layer_the_same_blob(cli, registry, local_image, tmp_path):
    # One deterministic gzip: a layer saved as a gzip OCI layout and the same layer
    # pushed are the same bytes, so registries and layouts agree on its digest.
    ref = f"{registry.host}/same/app:1"
    cli("push", "app:1", ref)
    manifest = json.loads(skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{ref}"))
    pushed = [d["digest"] for d in manifest["layers"]]
    out = tmp_path / "layout"
    cli("save", "--format", "oci-dir", "--compress", "gzip", "-o", out, "app:1")
    index = json.loads((out / "index.json").read_text())
    digest = index["manifests"][0]["digest"].split(":", 1)[1]
    saved = json.loads((out / "blobs" / "sha256" / digest).read_text())
    assert [d["digest"] for d in saved["layers"]] == pushed
    assert all(d["mediaType"].endswith("tar+gzip") for d in saved["layers"])


@pytest.mark.needs_root
def test_push_and_pull_with_podman(cli, registry, local_image, podman, tmp_path):
    ref = f"{registry.host}/pushed/podman:1"
    cli("push", "-q", "app:1", ref)
    podman("pull", "-q", "--tls-verify=false", ref)
    info = json.loads(podman("image", "inspect", ref))[0]
    assert info["RootFS"]["Layers"] == [la.diff_id for la in local_image]
    mount = podman("image", "mount", ref).strip()
    try:
        cli("checkout", "app:1", tmp_path / "co")
        # podman's extraction of layer 2 bumps the mtimes of the directories it writes
        # into (layer 2's tar does not list them: the edit kept their metadata); with
        # the overlay driver its image mount's root is a directory of its own (0555)
        assert_same_tree(mount, tmp_path / "co", ignore=["mtime:.", "mtime:etc", "mtime:usr",
                                                         "mode:.", "uid:.", "gid:."])
    finally:
        podman("image", "unmount", ref)


def test_interrupted_pull_resumes(cli, registry, tmp_path):
    big = os.urandom(3 << 20)  # incompressible: the blob is big enough to cut
    layout = tmp_path / "layout"
    write_layout(layout, [{"layers": [
        tar_bytes([("etc", None), ("etc/one", b"1\n")]),
        tar_bytes([("etc/two", b"2\n")]),
        tar_bytes([("data", None), ("data/big", big)]),
    ]}])  # fmt: skip
    skopeo("copy", "-q", "--dest-tls-verify=false", f"oci:{layout}:1",
           f"docker://{registry.host}/big/img:1")  # fmt: skip
    manifest = json.loads(
        skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{registry.host}/big/img:1")
    )
    blobs = [d["digest"] for d in manifest["layers"]]
    proxy = CuttingProxy(registry.port, blobs[2].encode(), limit=1 << 20)
    try:
        ref = f"{proxy.host}/big/img:1"
        failed = cli("pull", ref, check=False)
        assert failed.returncode == 1
        assert proxy.cuts == 1
        err = failed.stderr.strip()
        assert "\n" not in err and "Traceback" not in failed.stderr
        assert err.startswith(f"layerctl: pull of {ref} interrupted: ")
        assert "2 of 3 layers are complete" in err and "pull again to resume" in err
        assert progress(failed.stdout)[-2:] == ["L2: Pulling fs layer", "L2: Downloading"] or (
            "L1: Pull complete" in progress(failed.stdout)
        )
        assert cli("images", "-q").stdout == ""  # no tag
        cli("fsck")

        retry = cli("pull", ref).stdout
        assert progress(retry) == [
            "L0: Already exists",
            "L1: Already exists",
            "L2: Pulling fs layer",
            "L2: Downloading",
            "L2: Download complete",
            "L2: Pull complete",
        ]
        fetched = [r for r in proxy.requests if b"/blobs/sha256:" in r and r.startswith(b"GET")]
        for digest in blobs[:2]:
            assert sum(digest.encode() in r for r in fetched) == 1  # never downloaded again
        assert sum(blobs[2].encode() in r for r in fetched) == 2
        # with every layer present, a pull transfers the manifest and the config only
        before = len(proxy.requests)
        assert progress(cli("pull", ref).stdout) == [f"L{i}: Already exists" for i in range(3)]
        gets = [r.split()[1] for r in proxy.requests[before:] if r.startswith(b"GET")]
        assert [g.rsplit(b"/", 2)[-2] for g in gets] == [b"v2", b"manifests", b"blobs"]
        assert gets[-1].endswith(manifest["config"]["digest"].encode())
    finally:
        proxy.stop()
    store = Store(os.environ["LAYERCTL_ROOT"])
    assert store.refs_under("refs/pull/") == {}  # the tag took over
    store.close()
    cli("checkout", ref, tmp_path / "co")
    assert (tmp_path / "co" / "data" / "big").read_bytes() == big
    assert (tmp_path / "co" / "etc" / "two").read_text() == "2\n"


def test_multi_arch_platform(cli, registry, tmp_path):
    layout = tmp_path / "multi"
    images = [
        {"platform": ("linux", "amd64"), "layers": [tar_bytes([("arch", b"amd64\n")])]},
        {"platform": ("linux", "arm64", "v8"), "layers": [tar_bytes([("arch", b"arm64\n")])]},
        {"platform": ("linux", "arm", "v7"), "layers": [tar_bytes([("arch", b"armv7\n")])]},
    ]  # fmt: skip
    write_layout(layout, images, tag="m")
    write_layout(tmp_path / "named", images, tag="localhost/multi:1")
    ref = f"{registry.host}/multi/img:1"
    skopeo("copy", "-q", "--all", "--dest-tls-verify=false", f"oci:{layout}:m", f"docker://{ref}")
    from layerctl.images import host_arch

    expected = {"amd64": "amd64\n", "arm64": "arm64\n", "arm": "armv7\n"}.get(host_arch())
    if expected:
        cli("pull", ref)
        assert cli("show", f"{ref}:arch").stdout == expected
        # `load` of the same index chooses by the same rule (oci.platform)
        cli("load", "-i", tmp_path / "named")
        assert cli("show", "localhost/multi:1:arch").stdout == expected
    other = tmp_path / "other"
    write_layout(other, [
        {"platform": ("linux", "s390x"), "layers": [tar_bytes([("arch", b"s390x\n")])]},
        {"platform": ("windows", host_arch()), "layers": [tar_bytes([("arch", b"win\n")])]},
    ], tag="o")  # fmt: skip
    bad = cli("load", "-i", other, check=False)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1
    assert (f"no image for platform linux/{host_arch()}" in bad.stderr
            and f"(available: linux/s390x, windows/{host_arch()})" in bad.stderr)
    for platform, content in (("linux/arm64", "arm64\n"), ("linux/arm/v7", "armv7\n"),
                              ("linux/amd64", "amd64\n")):  # fmt: skip
        cli("pull", "--platform", platform, ref)
        assert cli("show", f"{ref}:arch").stdout == content
    bad = cli("pull", "--platform", "linux/s390x", ref, check=False)
    assert bad.returncode == 1
    assert bad.stderr.strip().endswith(
        "no image for platform linux/s390x (available: linux/amd64, linux/arm/v7, linux/arm64/v8)"
    )
    assert bad.stderr.count("\n") == 1


def test_pull_by_digest_and_errors(cli, registry, tmp_path):
    layout = tmp_path / "layout"
    write_layout(layout, [{"layers": [tar_bytes([("f", b"x\n")])]}])
    ref = f"{registry.host}/dig/img:1"
    skopeo("copy", "-q", "--dest-tls-verify=false", f"oci:{layout}:1", f"docker://{ref}")
    raw = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{ref}").encode()
    digest = "sha256:" + __import__("hashlib").sha256(raw).hexdigest()
    by_digest = f"{registry.host}/dig/img@{digest}"
    out = cli("pull", by_digest).stdout
    assert f"Digest: {digest}" in out and f"Downloaded newer image for {by_digest}" in out
    assert cli("images", "-q").stdout == ""  # no tag for a digest-only pull
    both = cli("pull", f"{registry.host}/dig/img:pinned@{digest}").stdout
    assert progress(both) == ["L0: Already exists"]
    assert cli("show", f"{registry.host}/dig/img:pinned:f").stdout == "x\n"
    # errors: one line each, no traceback
    for args, expected in (
        ((f"{registry.host}/dig/img:nope",), "not found"),
        ((f"{registry.host}/dig/img@sha256:{'0' * 64}",), "not found"),
        (("127.0.0.1:9/x:1",), "cannot reach registry 127.0.0.1:9"),
        (("Bad/Name",), "invalid reference"),
    ):
        result = cli("pull", *args, check=False)
        assert result.returncode == 1, args
        assert expected in result.stderr and result.stderr.count("\n") == 1, result.stderr
        assert "Traceback" not in result.stderr


def test_tls_with_ca_file(cli, tls_registry, local_image, tmp_path):
    ref = f"{tls_registry.host}/tls/app:1"
    untrusted = cli("push", "app:1", ref, check=False)
    assert untrusted.returncode == 1
    assert "certificate verify failed" in untrusted.stderr
    assert untrusted.stderr.count("\n") == 1
    cli("push", "-q", "--ca-file", tls_registry.cert, "app:1", ref)
    env = {"LAYERCTL_CA_FILE": str(tls_registry.cert), "LAYERCTL_ROOT": str(tmp_path / "s2")}
    assert "Downloaded newer image" in cli("pull", ref, env=env).stdout
    insecure = cli("pull", "--insecure", ref, env={"LAYERCTL_ROOT": str(tmp_path / "s3")})
    assert "Downloaded newer image" in insecure.stdout
    # certs.d in layerctl's config dir, like Docker's /etc/docker/certs.d
    certs = Path(os.environ["LAYERCTL_CONFIG_DIR"]) / "certs.d" / tls_registry.host
    certs.mkdir(parents=True)
    shutil.copy(tls_registry.cert, certs / "ca.crt")
    assert "Already exists" in cli("pull", ref).stdout


@pytest.mark.parametrize("kind", ["htpasswd", "token"])
def test_login_push_pull_with_auth(cli, tmp_path, config_dir, local_image, kind):
    users = {"alice": "s3cret"}
    options = {"users": users} if kind == "htpasswd" else {"token_users": users}
    reg = Registry(tmp_path / "auth-registry", tls=True, **options)
    try:
        reg.start()
        ca = ("--ca-file", str(reg.cert))
        ref = f"{reg.host}/private/app:1"
        anonymous = cli("push", *ca, "app:1", ref, check=False)
        assert anonymous.returncode == 1
        assert "needs credentials" in anonymous.stderr and f"layerctl login {reg.host}" in (
            anonymous.stderr
        )
        wrong = cli("login", *ca, "-u", "alice", "-p", "nope", reg.host, check=False)
        assert wrong.returncode == 1 and wrong.stderr.count("\n") == 1
        assert "rejected the credentials of 'alice'" in wrong.stderr
        assert "Traceback" not in wrong.stderr
        assert not (config_dir / "config.json").exists()

        ok = cli("login", *ca, "-u", "alice", "--password-stdin", reg.host, input="s3cret\n")
        assert ok.stdout == "Login Succeeded\n"
        saved = json.loads((config_dir / "config.json").read_text())
        assert saved["auths"][reg.host]["auth"] == base64.b64encode(b"alice:s3cret").decode()
        assert "Pushed" in cli("push", *ca, "app:1", ref).stdout
        env = {"LAYERCTL_ROOT": str(tmp_path / "other")}
        assert "Downloaded newer image" in cli("pull", *ca, ref, env=env).stdout

        out = cli("logout", reg.host).stdout
        assert out == f"Removing login credentials for {reg.host}\n"
        again = cli("logout", reg.host, check=False)
        assert again.stderr == f"layerctl: not logged in to {reg.host}\n"
        # Docker's config.json is read too
        docker = Path(os.environ["DOCKER_CONFIG"])
        docker.mkdir()
        (docker / "config.json").write_text(json.dumps(
            {"auths": {reg.host: {"auth": base64.b64encode(b"alice:s3cret").decode()}}}
        ))  # fmt: skip
        env = {"LAYERCTL_ROOT": str(tmp_path / "third")}
        assert "Downloaded newer image" in cli("pull", *ca, ref, env=env).stdout
        (docker / "config.json").write_text(json.dumps(
            {"auths": {reg.host: {"auth": base64.b64encode(b"alice:bad").decode()}}}
        ))  # fmt: skip
        bad = cli("pull", *ca, ref, check=False, env={"LAYERCTL_ROOT": str(tmp_path / "4")})
        assert bad.returncode == 1 and "rejected the credentials" in bad.stderr
        assert bad.stderr.count("\n") == 1
        if kind == "token":
            assert any(t["user"] == "alice" for t in reg.token.issued)
    finally:
        reg.stop()


def test_credentials_not_sent_over_plain_http(cli, tmp_path, config_dir):
    reg = Registry(tmp_path / "plain-auth", users={"alice": "pw"})
    try:
        reg.start()
        out = cli("login", "-u", "alice", "-p", "pw", reg.host, check=False)
        assert out.returncode == 1
        assert "only over TLS" in out.stderr and out.stderr.count("\n") == 1
    finally:
        reg.stop()


@pytest.mark.needs_root  # overlay mounts; umoci unpack keeps ownership
@pytest.mark.needs_tool("umoci")
def test_pull_writes_the_layer_dirs_of_the_tagged_chain(cli, registry, tmp_path):
    """A pull writes each layer's overlay dir while it holds the contents; the top's goes
    to the sibling commit that carries the image's own config (umoci's config is not
    layerctl's), so a first container builds nothing and sees the image."""
    from layerctl import containers as api
    from layerctl import faults
    from layerctl.containers import layerdirs
    from tests.layerhelpers import release_containers

    layout = _source_layout(tmp_path)
    ref = f"{registry.host}/team/app:1"
    skopeo("copy", "-q", "--dest-tls-verify=false", f"oci:{layout}:src", f"docker://{ref}")
    cli("pull", "-q", ref)
    store = Store(os.environ["LAYERCTL_ROOT"])
    try:
        top = resolve(store, ref)
        assert layerdirs.entries(store) == sorted(layerdirs.chain_ids(store, top))
        assert not [p for p in os.listdir(layerdirs.root(store)) if p.startswith(".tmp-")]

        def no_build() -> None:
            raise AssertionError("create built a layer dir the pull should have written")

        with faults.armed("layerdir.write", no_build):
            api.create(store, ref, name="c")
        merged = Path(api.mount(store, "c"))
        assert_same_tree(_umoci_rootfs(layout, "src", tmp_path / "unpacked"), merged)
    finally:
        release_containers(store)
        store.close()
    cli("fsck")


@pytest.mark.needs_root
@pytest.mark.needs_tool("umoci")
@pytest.mark.parametrize("point", ["layerdir.write#2", "layerdir.rename#2"])
def test_pull_killed_while_writing_a_layer_dir(cli, registry, tmp_path, point):
    """kill -9 while the second layer's dir is written or named: no dir under a layer's
    name is partial, fsck removes the debris, the pull resumes and a container on the
    image (its missing dir built then) sees the image."""
    from layerctl import containers as api
    from layerctl.containers import layerdirs
    from tests.layerhelpers import release_containers

    layout = _source_layout(tmp_path)
    ref = f"{registry.host}/team/app:1"
    skopeo("copy", "-q", "--dest-tls-verify=false", f"oci:{layout}:src", f"docker://{ref}")
    r = cli("pull", "-q", ref, check=False, env={"LAYERCTL_CRASH_AT": point})
    assert r.returncode == -9, r.stderr
    store = Store(os.environ["LAYERCTL_ROOT"])
    try:
        assert [p for p in os.listdir(layerdirs.root(store)) if p.startswith(".tmp-")]
        assert len(layerdirs.entries(store)) == 1  # the first layer's, whole
        cli("fsck")
        assert not [p for p in os.listdir(layerdirs.root(store)) if p.startswith(".tmp-")]
        assert ": Already exists" in cli("pull", ref).stdout  # the first layer
        api.create(store, ref, name="c")
        merged = Path(api.mount(store, "c"))
        assert_same_tree(_umoci_rootfs(layout, "src", tmp_path / "unpacked"), merged)
    finally:
        release_containers(store)
        store.close()
    cli("fsck")
