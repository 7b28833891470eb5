"""Crafted tar entries end in one clean UnpackError naming the layer and the entry (no
traceback, the target untouched); damaged or oversized headers are errors, never a
silent end of the layer."""

import subprocess
import sys
import tarfile

import pytest

from contentstore import Store
from contentstore.errors import UnpackError, UnsafeLayer

from unpacking import entry, image, layer_digests, tar_of


def refused(store: Store, ref: str, tmp_path, entry_name: str | None, *fragments: str) -> str:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    target = work / "target"
    with pytest.raises(UnpackError) as info:
        store.unpack(ref, target)
    message = str(info.value)
    assert "\n" not in message
    assert any(digest in message for digest in layer_digests(store, ref)), message
    if entry_name is not None:
        assert repr(entry_name) in message, message
    for fragment in fragments:
        assert fragment in message, message
    assert list(work.iterdir()) == []  # no target, no staging directory left
    return message


CRAFTED = {
    # name: (entries, the entry named in the error, a fragment of the message)
    "pax-mtime-1e300": ([entry("f", pax_headers={"mtime": "1e300"})], "f", "modification time"),
    "pax-mtime-nan": ([entry("f", pax_headers={"mtime": "nan"})], "f", "modification time"),
    "pax-mtime-inf": ([entry("f", pax_headers={"mtime": "-inf"})], "f", "modification time"),
    "pax-mtime-huge-integer": ([entry("f", pax_headers={"mtime": "9" * 40})], "f", "out of range"),
    "nul-in-path": ([entry("x", pax_headers={"path": "evil\x00name"})], "evil\x00name", "NUL"),
    "nul-in-symlink-target": ([entry("l", "symlink", "a", pax_headers={"linkpath": "/etc\x00x"})], "l", "NUL"),
    "nul-in-hardlink-target": ([entry("f", data="x"), entry("h", "hardlink", "f", pax_headers={"linkpath": "f\x00"})],
                               "h", "NUL"),
    "negative-uid-pax": ([entry("f", uid=-5)], "f", "uid -5"),
    "negative-gid-pax": ([entry("f", gid=-1)], "f", "gid -1"),
    "uid-too-large": ([entry("f", pax_headers={"uid": str(2**40)})], "f", "uid"),
    "whiteout-named-.wh.": ([entry(".wh.")], ".wh.", "whiteout"),
    "whiteout-named-.wh.-in-a-directory": ([entry("d/", "dir"), entry("d/keep", data="k"), entry("d/.wh.")],
                                           "d/.wh.", "whiteout"),
    "root-replaced-by-a-symlink": ([entry("./", "symlink", "/etc")], "./", "root"),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_entry_is_one_clean_error(case, tmp_path):
    entries, name, fragment = CRAFTED[case]
    store = Store(tmp_path / "store")
    ref = image(store, f"example.com/crafted/{case.lower().replace('.', '')}:1", tar_of(*entries))
    refused(store, ref, tmp_path, name, fragment)


def test_negative_uid_in_a_base_256_header(tmp_path):
    """GNU tar's base-256 numbers can be negative (no PAX record involved)."""
    store = Store(tmp_path / "store")
    ref = image(store, "example.com/crafted/gnu:1", tar_of(entry("f", uid=-7), format=tarfile.GNU_FORMAT))
    refused(store, ref, tmp_path, "f", "uid -7")


def test_whiteout_named_wh_deletes_nothing_in_a_later_layer(tmp_path):
    store = Store(tmp_path / "store")
    ref = image(store, "example.com/crafted/wh:1", tar_of(entry("d/", "dir"), entry("d/keep", data="k")),
                tar_of(entry("d/.wh.")))
    with pytest.raises(UnsafeLayer, match="invalid whiteout"):
        store.unpack(ref, tmp_path / "target")
    assert not (tmp_path / "target").exists()


def three_files() -> bytes:
    return tar_of(entry("one.txt", data="1"), entry("two.txt", data="2" * 2000), entry("three.txt", data="3"))


def offsets(tar: bytes) -> list[tuple[int, int]]:
    """(header offset, end of data) of each member."""
    import io
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        return [(m.offset, m.offset_data + -(-m.size // 512) * 512) for m in t.getmembers()]


def test_damaged_header_is_an_error_not_the_end_of_the_layer(tmp_path):
    tar = bytearray(three_files())
    second = offsets(bytes(tar))[1][0]
    tar[second + 1] ^= 0x01  # the name of two.txt: its checksum no longer matches
    store = Store(tmp_path / "store")
    ref = image(store, "example.com/crafted/checksum:1", bytes(tar))
    refused(store, ref, tmp_path, "one.txt", "not a valid tar stream", f"damaged tar header at offset {second}")


def test_truncated_layers(tmp_path):
    tar = three_files()
    (_, end1), (second, end2), _ = offsets(tar)
    store = Store(tmp_path / "store")
    in_header = image(store, "example.com/crafted/cut-header:1", tar[:second + 100])
    refused(store, in_header, tmp_path, "one.txt", "truncated")
    in_body = image(store, "example.com/crafted/cut-body:1", tar[:second + 512 + 1000])
    refused(store, in_body, tmp_path, "two.txt", "truncated")


def test_a_layer_ending_between_entries_without_end_blocks_is_whole(tmp_path):
    """Go's archive/tar takes the end of the stream between entries as the end of the
    archive; so do we (and an empty blob is an empty layer)."""
    tar = three_files()
    end = offsets(tar)[-1][1]
    store = Store(tmp_path / "store")
    ref = image(store, "example.com/crafted/no-end-blocks:1", tar[:end], b"")
    report = store.unpack(ref, tmp_path / "target")
    assert report.layers == 2
    assert sorted(p.name for p in (tmp_path / "target").iterdir()) == ["one.txt", "three.txt", "two.txt"]
    assert (tmp_path / "target" / "three.txt").read_text() == "3"


def test_oversized_pax_header_is_refused_before_it_is_read(tmp_path):
    store = Store(tmp_path / "store")
    ref = image(store, "example.com/crafted/huge-pax:1",
                tar_of(entry("ok.txt", data="ok"), entry("f", pax_headers={"comment": "x" * (3 << 20)})),
                compress=True)
    refused(store, ref, tmp_path, "ok.txt", "larger than 2 MiB")


def test_cli_prints_one_line_for_a_crafted_entry(tmp_path):
    store = Store(tmp_path / "store")
    ref = image(store, "example.com/crafted/cli:1", tar_of(entry("f", pax_headers={"mtime": "nan"})))
    proc = subprocess.run([sys.executable, "-m", "contentstore", "--root", str(store.root), "unpack", ref,
                           str(tmp_path / "out")], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("contentstore: error: layer sha256:") and "entry 'f'" in proc.stderr
