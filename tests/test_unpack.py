"""unpack: the same tree as umoci's rootless unpack, and no way out of the target."""

import io
import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from contentstore import Store
from contentstore.model import mediatypes as mt
from contentstore.testing import image_from_layers, push
from contentstore.errors import UnpackError, UnsafeLayer

from tools import require


def run(*args):
    subprocess.run(args, check=True, capture_output=True)


def tree(root: Path) -> dict:
    """path -> (type, mode, content or link target, hard link group)."""
    result, inodes = {}, {}
    for directory, dirs, files in os.walk(root):
        for name in sorted(dirs + files):
            path = Path(directory, name)
            st = os.lstat(path)
            rel = str(path.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                result[rel] = ("symlink", None, os.readlink(path), None)
            elif stat.S_ISDIR(st.st_mode):
                result[rel] = ("dir", stat.S_IMODE(st.st_mode), None, None)
            elif stat.S_ISREG(st.st_mode):
                group = inodes.setdefault(st.st_ino, rel) if st.st_nlink > 1 else None
                result[rel] = ("file", stat.S_IMODE(st.st_mode), path.read_bytes(), group)
            else:
                result[rel] = ("other", stat.S_IMODE(st.st_mode), None, None)
    return result


def tar_bytes(entries) -> bytes:
    """entries: (name, kind, payload) with kind file/dir/symlink/hardlink."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, payload in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1_700_000_000
            if kind == "file":
                data = payload.encode() if isinstance(payload, str) else payload
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
                continue
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, payload
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, payload
            tar.addfile(info)
    return out.getvalue()


@pytest.fixture
def umoci_image(tmp_path):
    """An image made by umoci: files, symlinks, hard links, an executable, a whiteout
    (a deleted file) and an opaque directory."""
    require("umoci")
    layout = tmp_path / "layout"
    image = f"{layout}:app"
    run("umoci", "init", "--layout", str(layout))
    run("umoci", "new", "--image", image)
    bundle = tmp_path / "bundle"
    run("umoci", "unpack", "--rootless", "--image", image, str(bundle))
    rootfs = bundle / "rootfs"
    (rootfs / "etc" / "conf.d").mkdir(parents=True)
    (rootfs / "etc" / "conf.d" / "old.conf").write_text("old\n")
    (rootfs / "etc" / "hostname").write_text("box\n")
    (rootfs / "usr" / "bin").mkdir(parents=True)
    tool = rootfs / "usr" / "bin" / "tool"
    tool.write_text("#!/bin/sh\necho tool\n")
    tool.chmod(0o755)
    (rootfs / "usr" / "bin" / "tool-again").hardlink_to(tool)
    (rootfs / "bin").symlink_to("usr/bin")
    (rootfs / "etc" / "localtime").symlink_to("/usr/share/zoneinfo/UTC")
    (rootfs / "srv").mkdir()
    (rootfs / "srv" / "doomed.txt").write_text("to be deleted\n")
    secret = rootfs / "srv" / "private.key"
    secret.write_text("key\n")
    secret.chmod(0o600)
    run("umoci", "repack", "--image", image, str(bundle))
    # second layer (from a fresh unpack of the first): a deleted file becomes a whiteout
    bundle = tmp_path / "bundle2"
    run("umoci", "unpack", "--rootless", "--image", image, str(bundle))
    rootfs = bundle / "rootfs"
    (rootfs / "srv" / "doomed.txt").unlink()
    (rootfs / "srv" / "added.txt").write_text("added\n")
    run("umoci", "repack", "--image", image, str(bundle))
    # third layer: an opaque directory
    opaque = tmp_path / "opaque.tar"
    opaque.write_bytes(tar_bytes([("etc/conf.d/", "dir", None), ("etc/conf.d/.wh..wh..opq", "file", ""),
                                  ("etc/conf.d/new.conf", "file", "new\n")]))
    run("umoci", "raw", "add-layer", "--image", image, str(opaque))
    return layout


def test_unpack_matches_umoci(umoci_image, registry, tmp_path):
    require("skopeo")
    ref = push(f"oci:{umoci_image}:app", registry, "team/tree:1")
    store = Store(tmp_path / "store")
    store.pull(ref)
    ours = tmp_path / "ours"
    report = store.unpack(ref, ours, rootless=True)  # as umoci --rootless
    assert report.layers == 3
    names = [m.name for layer in store.image(ref).layers
             for m in tarfile.open(fileobj=store.open(layer.digest), mode="r|*")]
    assert "srv/.wh.doomed.txt" in names and "etc/conf.d/.wh..wh..opq" in names
    theirs = tmp_path / "theirs"
    run("umoci", "unpack", "--rootless", "--image", f"{umoci_image}:app", str(theirs))
    expected, actual = tree(theirs / "rootfs"), tree(ours)
    assert actual == expected
    # and what that tree holds
    assert "srv/doomed.txt" not in actual and actual["srv/added.txt"][2] == b"added\n"
    assert "etc/conf.d/old.conf" not in actual and actual["etc/conf.d/new.conf"][2] == b"new\n"
    assert actual["usr/bin/tool"][1] == 0o755 and actual["srv/private.key"][1] == 0o600
    assert actual["bin"] == ("symlink", None, "usr/bin", None)
    assert actual["usr/bin/tool-again"][3] == actual["usr/bin/tool"][3] is not None


def image_with_layers(store: Store, ref: str, *layers: bytes) -> None:
    """An image of uncompressed layers (each tar's digest is its diffID)."""
    import hashlib
    image_from_layers(store, ref, [(layer, "sha256:" + hashlib.sha256(layer).hexdigest(), mt.OCI_LAYER)
                                   for layer in layers])


HOSTILE = {
    "dotdot": [[("../escaped.txt", "file", "x")]],
    "absolute": [[("/abs-escaped.txt", "file", "x")]],
    "symlink-then-write": [[("evil", "symlink", "../../../.."), ("evil/escaped.txt", "file", "x")]],
    "symlink-in-lower-layer": [[("evil", "symlink", "../../../..")], [("evil/escaped.txt", "file", "x")]],
    "hardlink-dotdot": [[("hl", "hardlink", "../outside.txt")]],
    "hardlink-absolute": [[("hl", "hardlink", "/etc/passwd")]],
    "hardlink-through-symlink": [[("up", "symlink", "../.."), ("hl", "hardlink", "up/outside.txt")]],
    "dir-replaced-by-symlink": [[("d/", "dir", None), ("d/ok.txt", "file", "ok")],
                                [("d", "symlink", "../../.."), ("d/escaped.txt", "file", "x")]],
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_layers_are_refused_and_nothing_escapes(case, tmp_path):
    sandbox = tmp_path / "sandbox"
    (sandbox / "a" / "b").mkdir(parents=True)
    outside = sandbox / "outside.txt"
    outside.write_text("untouched\n")
    store = Store(tmp_path / "store")
    image_with_layers(store, "example.com/hostile:1", *(tar_bytes(layer) for layer in HOSTILE[case]))
    target = sandbox / "a" / "b" / "target"
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if "store" not in p.parts)
    with pytest.raises(UnsafeLayer) as info:
        store.unpack("example.com/hostile:1", target)
    assert "entry" in str(info.value) and "\n" not in str(info.value)
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if "store" not in p.parts)
    assert after == before  # nothing written anywhere, the target not even created
    assert outside.read_text() == "untouched\n"
    assert not Path("/escaped.txt").exists() and not Path("/abs-escaped.txt").exists()


def test_absolute_symlinks_point_into_the_image(tmp_path):
    store = Store(tmp_path / "store")
    image_with_layers(store, "example.com/abs:1", tar_bytes([
        ("var/", "dir", None), ("run/", "dir", None), ("var/run", "symlink", "/run"),
        ("var/run/app.pid", "file", "42\n")]))
    target = tmp_path / "target"
    store.unpack("example.com/abs:1", target)
    assert (target / "run" / "app.pid").read_text() == "42\n"  # as the container sees it
    assert os.readlink(target / "var" / "run") == "/run"


def test_target_directory_rules(tmp_path):
    store = Store(tmp_path / "store")
    image_with_layers(store, "example.com/t:1", tar_bytes([("f.txt", "file", "f\n")]))
    empty = tmp_path / "empty"
    empty.mkdir()
    store.unpack("example.com/t:1", empty)
    assert (empty / "f.txt").read_text() == "f\n"
    with pytest.raises(UnpackError, match="not empty"):
        store.unpack("example.com/t:1", empty)
    (tmp_path / "file").write_text("x")
    with pytest.raises(UnpackError, match="not a directory"):
        store.unpack("example.com/t:1", tmp_path / "file")


def test_unpack_gzip_zstd_and_platform(registry, tmp_path):
    require("skopeo")
    from contentstore.testing import build_index, push_test_image
    ref = push_test_image(registry, "team/z:1", {"z.txt": "zstd!\n"}, "--format", "oci",
                          "--dest-compress-format", "zstd")
    store = Store(tmp_path / "store")
    store.pull(ref)
    store.unpack(ref, tmp_path / "z")
    assert (tmp_path / "z" / "z.txt").read_text() == "zstd!\n"
    build_index(store, "example.com/multi:1", [("linux", "amd64", None), ("linux", "arm64", "v8")])
    store.unpack("example.com/multi:1", tmp_path / "arm", platform="linux/arm64")
    assert [p.name for p in (tmp_path / "arm").iterdir()] == ["linux-arm64-v8.txt"]


def test_cli_unpack(tmp_path):
    import sys
    store = Store(tmp_path / "store")
    image_with_layers(store, "example.com/cli:1", tar_bytes([("hello", "file", "hi\n")]))
    command = [sys.executable, "-m", "contentstore", "--root", str(store.root), "unpack", "example.com/cli:1"]
    proc = subprocess.run([*command, str(tmp_path / "out")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "hello").read_text() == "hi\n"
    bad = subprocess.run([*command, str(tmp_path / "out")], capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "not empty" in bad.stderr


def test_xattrs_and_device_nodes(tmp_path):
    """xattrs are set where the file system allows; device nodes are made as root, and a
    rootless unpack (the default when not root) writes an empty file in their place, as
    umoci --rootless does, and reports it."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        data = b"attributed\n"
        info = tarfile.TarInfo("with-xattr.txt")
        info.size = len(data)
        info.pax_headers = {"SCHILY.xattr.user.contentstore": "yes"}
        tar.addfile(info, io.BytesIO(data))
        device = tarfile.TarInfo("dev/null")
        device.type, device.devmajor, device.devminor, device.mode = tarfile.CHRTYPE, 1, 3, 0o666
        tar.addfile(device)
    store = Store(tmp_path / "store")
    image_with_layers(store, "example.com/dev:1", out.getvalue())

    rootless = tmp_path / "rootless"
    report = store.unpack("example.com/dev:1", rootless, rootless=True)
    assert report.device_placeholders == ["dev/null"]
    placeholder = os.lstat(rootless / "dev" / "null")
    assert stat.S_ISREG(placeholder.st_mode) and placeholder.st_size == 0
    assert stat.S_IMODE(placeholder.st_mode) == 0o666
    assert (rootless / "with-xattr.txt").read_text() == "attributed\n"
    probe = tmp_path / "probe"
    probe.write_text("")
    try:
        os.setxattr(probe, "user.probe", b"1")
        xattrs_supported = True
    except OSError:
        xattrs_supported = False  # this file system takes no user xattrs
    if xattrs_supported:
        assert os.getxattr(rootless / "with-xattr.txt", "user.contentstore") == b"yes"
    else:
        assert report.xattrs_dropped == 1

    if os.geteuid() == 0:
        privileged = tmp_path / "privileged"
        store.unpack("example.com/dev:1", privileged)
        assert stat.S_ISCHR(os.lstat(privileged / "dev" / "null").st_mode)
