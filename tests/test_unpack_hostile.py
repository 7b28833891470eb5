"""Hostile layers that try to change the host through unpack's deferred directory
metadata: a directory is recorded (mode, times, owner), then it, or one of its parents,
is replaced by a symlink to a host path (absolute, climbing with ``../``) or to another
directory of the image, in the same layer or a later one. Raw tar bytes, pushed to a
real registry and pulled back, unpacked as root, as root with ``rootless=True`` and as
an unprivileged user; nothing outside the target may change (mode, owner, times
including ctime, content)."""

import os
import stat

import pytest

from contentstore import Store

from unpacking import MODES, entry, give_to_nobody, image, open_tmp, snapshot, tar_of, unpack, writers  # noqa: F401

# each test with and without writer threads
pytestmark = [pytest.mark.needs("docker-registry"), pytest.mark.usefixtures("writers")]

#: what every hostile directory entry asks for: set-id, world-writable, 1970, another owner
HOSTILE = dict(mode=0o6777, mtime=0, uid=4242, gid=4242)
#: symlink targets from the root of the target (and of its staging directory beside it)
CLIMB = "../../host"


def d(name, **fields):
    return entry(name, "dir", **{**HOSTILE, **fields})


def link(name, target):
    return entry(name, "symlink", target)


def cases(host):
    """name -> (layers, {path in target: expected symlink target})."""
    file, directory = f"{host}/file.txt", f"{host}/dir"
    return {
        "same-layer-absolute-file": ([[d("d"), link("d", file)]], {"d": file}),
        "same-layer-absolute-dir": ([[d("d"), link("d", directory)]], {"d": directory}),
        "later-layer-absolute-file": ([[d("d")], [link("d", file)]], {"d": file}),
        "later-layer-absolute-dir": ([[d("d"), d("d/x")], [link("d", directory)]], {"d": directory}),
        "same-layer-relative-climb": ([[d("d"), link("d", f"{CLIMB}/file.txt")]], {"d": f"{CLIMB}/file.txt"}),
        "later-layer-relative-climb": ([[d("d")], [link("d", f"{CLIMB}/dir")]], {"d": f"{CLIMB}/dir"}),
        "parent-replaced-same-layer": ([[d("a"), d("a/sub"), link("a", directory)]], {"a": directory}),
        "parent-replaced-later-layer": ([[d("a"), d("a/sub")], [link("a", f"{CLIMB}/dir")]], {"a": f"{CLIMB}/dir"}),
        "grandparent-replaced": ([[d("a"), d("a/b"), d("a/b/sub")], [link("a", f"{CLIMB}/dir")]],
                                 {"a": f"{CLIMB}/dir"}),
        "whiteout-then-symlink": ([[d("d")], [entry(".wh.d"), link("d", file)]], {"d": file}),
        "opaque-then-symlink": ([[d("a", mode=0o755), d("a/d")], [entry("a/", "dir"), entry("a/.wh..wh..opq"),
                                                                  link("a/d", file)]], {"a/d": file}),
        "root-entry-then-symlinked-child": ([[entry("./", "dir", mode=0o755), d("d")], [link("d", file)]],
                                            {"d": file}),
    }


CASES = sorted(cases("/host"))


@pytest.fixture
def sandbox(open_tmp):
    """open_tmp/host (what must not change: a file, a directory with a subdirectory
    named like the image's) and open_tmp/work (the target's parent)."""
    host = open_tmp / "host"
    (host / "dir" / "sub").mkdir(parents=True)
    (host / "dir" / "b" / "sub").mkdir(parents=True)
    (host / "dir" / "inner.txt").write_text("inner\n")
    (host / "file.txt").write_text("host file\n")
    (open_tmp / "work").mkdir()
    for path in [host, *host.rglob("*")]:
        os.utime(path, (1_000_000_000, 1_000_000_000), follow_symlinks=False)
    return open_tmp


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASES)
def test_nothing_outside_the_target_changes(case, mode, sandbox, registry):
    host = sandbox / "host"
    layers, links = cases(host)[case]
    source = Store(sandbox / "source")
    ref = image(source, f"{registry.host}/hostile/{case}:{mode}", *(tar_of(*layer) for layer in layers))
    source.push(ref)
    store = Store(sandbox / "store")
    store.pull(ref)
    if mode == "nobody":
        give_to_nobody(host, sandbox / "work")  # so that a followed chmod would succeed
    before = snapshot(host)
    target = sandbox / "work" / "target"

    unpack(mode, store, ref, target)

    assert snapshot(host) == before
    for path, link_target in links.items():
        assert os.readlink(target / path) == link_target
    assert sorted(p.name for p in (sandbox / "work").iterdir()) == ["target"]  # no staging left


@pytest.mark.parametrize("mode", MODES)
def test_directory_replaced_by_a_link_to_another_directory_keeps_that_ones_metadata(mode, open_tmp):
    """A recorded directory replaced by a symlink to a directory inside the target: what
    was recorded applies to nothing; the other directory keeps its own mode and times."""
    store = Store(open_tmp / "store")
    ref = image(store, "example.com/hostile/inside:1",
                tar_of(entry("other", "dir", mode=0o751, mtime=1_500_000_000), d("d"), d("d/x")),
                tar_of(link("d", "other"), entry("e", "dir", mode=0o700, mtime=1_400_000_000),
                       d("e/inner"), link("e/inner", "/other")))
    (open_tmp / "work").mkdir()
    if mode == "nobody":
        give_to_nobody(open_tmp / "work")
    target = open_tmp / "work" / "target"
    unpack(mode, store, ref, target)
    other = os.lstat(target / "other")
    assert stat.S_IMODE(other.st_mode) == 0o751 and other.st_mtime_ns == 1_500_000_000 * 10**9
    assert os.readlink(target / "d") == "other" and os.readlink(target / "e" / "inner") == "/other"
    e = os.lstat(target / "e")
    assert stat.S_IMODE(e.st_mode) == 0o700 and e.st_mtime_ns == 1_400_000_000 * 10**9
    if mode == "root":
        assert (other.st_uid, other.st_gid) == (0, 0)


def through_links(host):
    """Entries that reach a host path through a layer's symlink, or replace a symlink to
    one: each is refused, or lands inside the target (an absolute symlink points into the
    image, as the container sees it)."""
    file, directory = f"{host}/file.txt", f"{host}/dir"
    return {
        "whiteout-through-absolute-symlink": [[link("evil", directory)], [entry("evil/.wh.inner.txt")]],
        "whiteout-through-climbing-symlink": [[link("evil", f"{CLIMB}/dir")], [entry("evil/.wh.inner.txt")]],
        "opaque-through-absolute-symlink": [[link("evil", directory)], [entry("evil/.wh..wh..opq")]],
        "whiteout-of-a-symlink": [[link("evil", directory)], [entry(".wh.evil")]],
        "file-through-absolute-symlink": [[link("evil", directory), entry("evil/inner.txt", data="pwned")]],
        "hardlink-through-absolute-symlink": [[link("evil", str(host)), entry("h", "hardlink", "evil/file.txt")]],
        "directory-over-symlink": [[link("d", directory)], [entry("d/", "dir", **HOSTILE)]],
        "file-over-symlink": [[link("f", file)], [entry("f", data="pwned", mode=0o6777)]],
        "fifo-over-symlink": [[link("f", file)], [entry("f", "fifo", mode=0o6777)]],
        "device-over-symlink": [[link("f", file)], [entry("f", "chr", devmajor=1, devminor=3, mode=0o6777)]],
        "hardlink-over-symlink": [[entry("t", data="t"), link("f", file)], [entry("f", "hardlink", "t")]],
        "symlink-with-xattrs": [[entry("f", "symlink", file, pax_headers={"SCHILY.xattr.user.x": "1",
                                                                          "SCHILY.xattr.trusted.x": "1"})]],
        "symlink-then-parent-dir-metadata": [[entry("a/", "dir"), link("a/f", file)], [d("a")]],
    }


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", sorted(through_links("/host")))
def test_links_from_a_layer_are_never_followed_out(case, mode, sandbox):
    host = sandbox / "host"
    store = Store(sandbox / "store")
    ref = image(store, f"example.com/hostile/{case}:1", *(tar_of(*layer) for layer in through_links(host)[case]))
    if mode == "nobody":
        give_to_nobody(host, sandbox / "work")
    before = snapshot(host)
    try:
        unpack(mode, store, ref, sandbox / "work" / "target")
    except Exception as exc:  # refused: one line, naming the entry
        assert "entry" in str(exc) and "\n" not in str(exc)
    assert snapshot(host) == before
