"""unpack writes what the layer says (umoci and the OCI layer spec as the reference):
a directory replaced by a file takes the file's metadata, a hard link to a symlink
stays one, PAX nanoseconds are kept, the ./ entry's metadata goes to DIR, xattrs that
cannot be set and rootless device nodes are reported by name (and by the CLI in one
line each)."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from contentstore import Store

from unpacking import MODES, asdict, entry, give_to_nobody, image, open_tmp, tar_of, unpack, writers  # noqa: F401

pytestmark = pytest.mark.usefixtures("writers")  # each test with and without writer threads

NS = 10**9


def mtime_ns(seconds: str) -> dict:
    return {"pax_headers": {"mtime": seconds}}


@pytest.mark.parametrize("later", [False, True], ids=["same-layer", "later-layer"])
@pytest.mark.parametrize("mode", ["root", "rootless"])
def test_directory_replaced_by_a_file_takes_the_files_metadata(later, mode, tmp_path):
    directory = [entry("d/", "dir", mode=0o4777, mtime=100, uid=0), entry("d/x", data="x")]
    file = [entry("d", data="file\n", mode=0o640, uid=1234, gid=4321, **mtime_ns("1600000000.123456789"))]
    layers = [tar_of(*directory), tar_of(*file)] if later else [tar_of(*directory, *file)]
    store = Store(tmp_path / "store")
    ref = image(store, "example.com/fidelity/dir-to-file:1", *layers)
    unpack(mode, store, ref, tmp_path / "out")
    st = os.lstat(tmp_path / "out" / "d")
    assert stat.S_ISREG(st.st_mode) and (tmp_path / "out" / "d").read_text() == "file\n"
    assert stat.S_IMODE(st.st_mode) == 0o640
    assert st.st_mtime_ns == 1_600_000_000 * NS + 123_456_789
    if mode == "root":
        assert (st.st_uid, st.st_gid) == (1234, 4321)


@pytest.mark.parametrize("mode", MODES)
def test_hard_link_to_a_symlink_is_a_hard_link_to_that_symlink(mode, open_tmp):
    store = Store(open_tmp / "store")
    ref = image(store, "example.com/fidelity/hardlink:1",
                tar_of(entry("target.txt", data="t"), entry("s", "symlink", "target.txt"),
                       entry("h", "hardlink", "s"), entry("dir/", "dir"), entry("dir/h2", "hardlink", "s")))
    (open_tmp / "work").mkdir()
    if mode == "nobody":
        give_to_nobody(open_tmp / "work")
    out = open_tmp / "work" / "out"
    unpack(mode, store, ref, out)
    s, h, h2 = (os.lstat(out / name) for name in ("s", "h", "dir/h2"))
    assert stat.S_ISLNK(h.st_mode) and os.readlink(out / "h") == "target.txt"
    assert s.st_ino == h.st_ino == h2.st_ino and s.st_nlink == 3


def test_pax_nanoseconds_are_kept(tmp_path):
    store = Store(tmp_path / "store")
    ref = image(store, "example.com/fidelity/ns:1", tar_of(
        entry("./", "dir", **mtime_ns("1500000000.000000001")),
        entry("d/", "dir", **mtime_ns("1600000000.987654321")),
        entry("d/f", data="f", **mtime_ns("1234567890.5")),
        entry("d/s", "symlink", "f", **mtime_ns("1700000000.999999999")),
        entry("old", data="o", **mtime_ns("-1.25")),
        entry("long", data="l", **mtime_ns("1600000000.1234567891234"))))
    out = tmp_path / "out"
    store.unpack(ref, out)
    assert os.lstat(out).st_mtime_ns == 1_500_000_000 * NS + 1
    assert os.lstat(out / "d").st_mtime_ns == 1_600_000_000 * NS + 987_654_321
    assert os.lstat(out / "d" / "f").st_mtime_ns == 1_234_567_890 * NS + 500_000_000
    assert os.lstat(out / "d" / "s").st_mtime_ns == 1_700_000_000 * NS + 999_999_999
    assert os.lstat(out / "old").st_mtime_ns == -1_250_000_000
    assert os.lstat(out / "long").st_mtime_ns == 1_600_000_000 * NS + 123_456_789


@pytest.mark.parametrize("mode", ["root", "rootless"])
def test_root_entry_metadata_goes_to_dir(mode, tmp_path):
    store = Store(tmp_path / "store")
    ref = image(store, "example.com/fidelity/root:1",
                tar_of(entry("./", "dir", mode=0o751, uid=1234, gid=4321, mtime=1_400_000_000),
                       entry("f", data="f")),
                tar_of(entry("g", data="g")))
    out = tmp_path / "out"
    out.mkdir()  # an existing empty DIR takes it too
    unpack(mode, store, ref, out)
    st = os.lstat(out)
    assert stat.S_IMODE(st.st_mode) == 0o751 and st.st_mtime_ns == 1_400_000_000 * NS
    assert (out / "g").read_text() == "g"
    if mode == "root":
        assert (st.st_uid, st.st_gid) == (1234, 4321)


def xattr_layer() -> bytes:
    def with_xattrs(*names):
        return {"pax_headers": {f"SCHILY.xattr.{name}": "v" for name in names}}
    return tar_of(entry("plain.txt", data="p", **with_xattrs("user.ok")),
                  entry("caps", data="c", **with_xattrs("user.ok", "trusted.overlay.x", "security.test")),
                  entry("d/", "dir", **with_xattrs("trusted.dir")),
                  entry("dev/", "dir"),
                  entry("dev/null", "chr", devmajor=1, devminor=3, mode=0o666),
                  entry("dev/sda", "blk", devmajor=8, devminor=0, mode=0o660, mtime=1_300_000_000),
                  entry("fifo", "fifo", mode=0o600))


def test_rootless_reports_xattrs_and_device_nodes_by_name(open_tmp):
    """As a real unprivileged user: trusted.* and security.* cannot be set, device nodes
    cannot be made; each is named in the report, user.* xattrs and FIFOs are made."""
    store = Store(open_tmp / "store")
    ref = image(store, "example.com/fidelity/rootless:1", xattr_layer())
    (open_tmp / "work").mkdir()
    give_to_nobody(open_tmp / "work")
    out = open_tmp / "work" / "out"
    report = asdict(unpack("nobody", store, ref, out))
    assert sorted(map(tuple, report["dropped_xattrs"])) == [
        ("caps", "security.test"), ("caps", "trusted.overlay.x"), ("d", "trusted.dir")]
    assert report["device_placeholders"] == ["dev/null", "dev/sda"]
    for name, mode in (("dev/null", 0o666), ("dev/sda", 0o660)):
        st = os.lstat(out / name)
        assert stat.S_ISREG(st.st_mode) and st.st_size == 0 and stat.S_IMODE(st.st_mode) == mode
    assert os.lstat(out / "dev" / "sda").st_mtime_ns == 1_300_000_000 * NS
    assert stat.S_ISFIFO(os.lstat(out / "fifo").st_mode)
    assert os.getxattr(out / "caps", "user.ok") == b"v"


def test_root_makes_devices_and_sets_every_xattr(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    store = Store(tmp_path / "store")
    ref = image(store, "example.com/fidelity/root-devices:1", xattr_layer(),
                tar_of(entry("dev/zero", "chr", devmajor=1, devminor=5, mode=0o666,
                             pax_headers={"SCHILY.xattr.trusted.node": "n"}),
                       entry("link", "symlink", "caps", pax_headers={"SCHILY.xattr.trusted.link": "l"})))
    report = store.unpack(ref, tmp_path / "out")
    assert report.dropped_xattrs == [] and report.device_placeholders == []
    st = os.lstat(tmp_path / "out" / "dev" / "sda")
    assert stat.S_ISBLK(st.st_mode) and os.major(st.st_rdev) == 8 and stat.S_IMODE(st.st_mode) == 0o660
    assert st.st_mtime_ns == 1_300_000_000 * NS
    assert os.getxattr(tmp_path / "out" / "caps", "trusted.overlay.x") == b"v"
    assert os.getxattr(tmp_path / "out" / "dev" / "zero", "trusted.node", follow_symlinks=False) == b"n"
    assert os.getxattr(tmp_path / "out" / "link", "trusted.link", follow_symlinks=False) == b"l"
    assert "trusted.link" not in os.listxattr(tmp_path / "out" / "caps")


def test_cli_warns_once_for_devices_and_once_for_xattrs(open_tmp):
    if os.geteuid() != 0:
        pytest.skip("running as another user needs root")
    store = Store(open_tmp / "store")
    ref = image(store, "example.com/fidelity/cli:1", xattr_layer())
    subprocess.run(["chmod", "-R", "a+rX", str(store.root)], check=True)
    (open_tmp / "work").mkdir()
    give_to_nobody(open_tmp / "work")
    # The store (its plugins) is made while every file is readable, then the CLI runs as 65534.
    script = ("import os, sys; from contentstore import cli; import contentstore.image.unpack; "
              "store = cli.Context(cli.build_parser().parse_args(sys.argv[1:])).store; "
              "cli.Context.store = property(lambda self: store); "
              "os.setgroups([]); os.setgid(65534); os.setuid(65534); sys.exit(cli.main(sys.argv[1:]))")
    proc = subprocess.run([sys.executable, "-c", script, "--root", str(store.root), "unpack", ref,
                           str(open_tmp / "work" / "out")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 2, proc.stderr
    assert "2 device node(s) written as empty files" in lines[0] and "dev/null, dev/sda" in lines[0]
    assert "3 extended attribute(s) could not be set" in lines[1]
    assert "security.test (1)" in lines[1] and "trusted.overlay.x (1)" in lines[1] and "trusted.dir (1)" in lines[1]


@pytest.mark.needs("umoci")
def test_same_tree_as_umoci_rootless(tmp_path):
    """The cases above in one image, against umoci unpack --rootless of the same layout:
    type, mode, size, content or link target, hard link groups, and mtimes to the
    nanosecond (DIR itself included)."""
    store = Store(tmp_path / "store")
    ref = image(store, "example.com/fidelity/umoci:1",
                tar_of(entry("./", "dir", mode=0o750, **mtime_ns("1500000000.25")),
                       entry("d/", "dir", mode=0o711, mtime=1_400_000_000),
                       entry("d/inner", data="i"),
                       entry("s", "symlink", "target", **mtime_ns("1600000000.5")),
                       entry("h", "hardlink", "s"),
                       entry("dev/", "dir", mode=0o755, mtime=1_300_000_000),
                       entry("dev/null", "chr", devmajor=1, devminor=3, mode=0o666),
                       entry("f.txt", data="abc", **mtime_ns("1300000000.123456789"))),
                tar_of(entry("d", data="hi", mode=0o640, **mtime_ns("1200000000.987654321")),
                       entry("dev/", "dir", mode=0o755, mtime=1_300_000_000)))
    ours = tmp_path / "ours"
    report = store.unpack(ref, ours, rootless=True)
    assert report.device_placeholders == ["dev/null"]
    theirs = tmp_path / "theirs"
    subprocess.run(["umoci", "unpack", "--rootless", "--image", f"{store.root}:{ref}", str(theirs)],
                   check=True, capture_output=True)
    assert listing(ours) == listing(theirs / "rootfs")


def listing(root: Path) -> dict:
    result, groups = {}, {}
    for path in [root, *sorted(root.rglob("*"))]:
        st = os.lstat(path)
        rel = str(path.relative_to(root))
        if stat.S_ISLNK(st.st_mode):
            content = os.readlink(path)
        elif stat.S_ISREG(st.st_mode):
            content = path.read_bytes()
        else:
            content = None
        group = groups.setdefault(st.st_ino, rel) if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode) else None
        result[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode) if not stat.S_ISLNK(st.st_mode) else None,
                       st.st_size if not stat.S_ISDIR(st.st_mode) else None, content, group, st.st_mtime_ns)
    return result

