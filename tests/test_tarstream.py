"""The streaming tar reader (``contentstore.image.tarstream``) against tarfile, the
reference it replaces: archives written by tarfile in USTAR, GNU and PAX forms, read back
field by field and byte by byte through sources that cut the stream anywhere; GNU tar's
sparse files in each of its formats; the errors damaged and hostile streams must give;
Hypothesis for random archives (equal to what tarfile reads) and for arbitrary or mutated
bytes (entries or InvalidTar, never another exception, memory bounded).

Where the reader deliberately differs from tarfile the reference is adjusted, each place
saying so: global PAX records apply to every later entry (tarfile applies them only to
entries with their own PAX header), a PAX record with an empty value is absent (as in
Go), types without a body have size 0, and a regular entry named with a trailing slash is
a directory (as GNU tar has it).

Hypothesis runs ``CONTENTSTORE_FUZZ_EXAMPLES`` examples per property (default 300).
"""

from __future__ import annotations

import io
import itertools
import os
import random
import subprocess
import tarfile
import tracemalloc
import zlib
from decimal import Decimal
from typing import Callable, Iterable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tools import require

from contentstore.errors import InvalidTar, UnpackError
from contentstore.image import tarstream
from contentstore.image.tarstream import MAX_HEADER_BYTES, TarEntry, TarReader

EXAMPLES = int(os.environ.get("CONTENTSTORE_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
FORMATS = {"ustar": tarfile.USTAR_FORMAT, "gnu": tarfile.GNU_FORMAT, "pax": tarfile.PAX_FORMAT}
END = bytes(1024)
FIELDS = ("name", "linkname", "type", "mode", "uid", "gid", "size", "mtime_ns", "devmajor", "devminor",
          "xattrs", "offset")


# -- sources and readers -----------------------------------------------------------------------


def cut(data: bytes, sizes: int | Iterable[int]) -> list[bytes]:
    """``data`` in chunks of the given sizes (cycled)."""
    cycle = itertools.cycle([sizes] if isinstance(sizes, int) else list(sizes))
    chunks, pos = [], 0
    while pos < len(data):
        size = next(cycle)
        chunks.append(data[pos:pos + size])
        pos += size
    return chunks


def source(chunks: list[bytes]) -> Callable[[], bytes]:
    it = iter(chunks)
    return lambda: next(it, b"")


def fields(entry: TarEntry) -> dict:
    return {name: getattr(entry, name) for name in FIELDS}


def read(data: bytes, sizes: int | Iterable[int] = 1 << 20) -> list[tuple[dict, bytes]]:
    """Every entry and body through TarReader, checking that bodies are zero-copy views."""
    chunks = cut(data, sizes)
    chunk_ids = {id(chunk) for chunk in chunks} | {id(tarstream._ZEROS)}
    reader = TarReader(source(chunks))
    out = []
    while (entry := reader.next()) is not None:
        pieces = list(reader.body())
        for piece in pieces:
            assert isinstance(piece, memoryview) and piece.readonly and len(piece) > 0
            assert id(piece.obj) in chunk_ids, "a body piece is a copy"
        body = b"".join(pieces)
        assert len(body) == entry.size
        out.append((fields(entry), body))
    assert reader.next() is None
    reader.drain()
    return out


def pax_ns(text: str) -> int:
    """Exact nanoseconds of a PAX time, the fraction cut at nine digits."""
    return int(Decimal(text) * 10**9)


def reference(data: bytes) -> list[tuple[dict, bytes]]:
    """What tarfile reads, in TarEntry's terms."""
    out = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r|") as tar:
        for member in tar:
            # Global records apply to every later entry (tarfile: only to those with a PAX
            # header of their own); an empty value is no value (as Go).
            records = {k: v for k, v in {**tar.pax_headers, **member.pax_headers}.items() if v}
            kind = member.type
            if kind in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE, tarfile.GNUTYPE_SPARSE):
                kind = tarfile.REGTYPE
            name = member.name
            if kind == tarfile.REGTYPE and name.endswith("/"):  # GNU tar's old convention
                kind, name = tarfile.DIRTYPE, name.rstrip("/")
            regular = kind == tarfile.REGTYPE
            device = member.ischr() or member.isblk()
            body = tar.extractfile(member).read() if regular else b""
            out.append(({
                "name": name,
                "linkname": member.linkname,
                "type": kind,
                "mode": member.mode,
                "uid": member.uid,
                "gid": member.gid,
                "size": member.size if regular else 0,
                "mtime_ns": pax_ns(records["mtime"]) if "mtime" in records else int(member.mtime) * 10**9,
                "devmajor": member.devmajor if device else 0,
                "devminor": member.devminor if device else 0,
                "xattrs": {key[13:]: value.encode("utf-8", "surrogateescape")
                           for key, value in records.items() if key.startswith("SCHILY.xattr.")},
                "offset": member.offset,
            }, body))
    return out


def outcome(data: bytes, sizes: int | Iterable[int] = 1 << 20) -> list[tuple[dict, bytes]] | InvalidTar:
    try:
        return read(data, sizes)
    except InvalidTar as exc:
        return exc


# -- raw archives --------------------------------------------------------------------------------


def octal(value: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, value)


def header(name: bytes = b"file", *, type: bytes = b"0", size: int = 0, mode: int = 0o644, uid: int = 0,
           gid: int = 0, mtime: int = 0, linkname: bytes = b"", magic: bytes = b"ustar\x0000",
           prefix: bytes = b"", raw: dict[int, bytes] | None = None, chksum: int | None = None) -> bytes:
    """One header block, fields as given; ``raw`` puts bytes at offsets (before the
    checksum is computed)."""
    block = bytearray(512)
    block[0:len(name)] = name
    block[100:108] = octal(mode, 8)
    block[108:116] = octal(uid, 8)
    block[116:124] = octal(gid, 8)
    block[124:136] = octal(size, 12)
    block[136:148] = octal(mtime, 12)
    block[156:157] = type
    block[157:157 + len(linkname)] = linkname
    block[257:265] = magic
    block[345:345 + len(prefix)] = prefix
    for offset, value in (raw or {}).items():
        block[offset:offset + len(value)] = value
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % (sum(block) if chksum is None else chksum)
    return bytes(block)


def member(block: bytes, body: bytes = b"") -> bytes:
    return block + body + bytes(-len(body) % 512)


def record(key: bytes, value: bytes) -> bytes:
    """One PAX record with its exact length."""
    rest = b" " + key + b"=" + value + b"\n"
    length = len(rest) + 1
    while len(str(length)) + len(rest) != length:
        length += 1
    return b"%d" % length + rest


def pax(*records: tuple[bytes, bytes], type: bytes = b"x") -> bytes:
    body = b"".join(record(key, value) for key, value in records)
    return member(header(b"PaxHeaders/file", type=type, size=len(body)), body)


def refix(data: bytearray, block_start: int) -> None:
    """Recompute the checksum of the block at ``block_start``."""
    block = data[block_start:block_start + 512]
    if len(block) == 512:
        block[148:156] = b" " * 8
        data[block_start + 148:block_start + 156] = b"%06o\0 " % sum(block)


# -- archives tarfile writes ------------------------------------------------------------------------


def info(name: str, kind: bytes = tarfile.REGTYPE, **attrs) -> tarfile.TarInfo:
    member_info = tarfile.TarInfo(name)
    member_info.type = kind
    member_info.mtime = 1_700_000_000
    for key, value in attrs.items():
        setattr(member_info, key, value)
    return member_info


def archive(members: Iterable[tuple[tarfile.TarInfo, bytes] | bytes], fmt: int,
            pax_headers: dict[str, str] | None = None) -> bytes:
    """A tar stream: each TarInfo as tarfile writes it (with its body), raw bytes as
    given, the end blocks."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt, pax_headers=pax_headers) as tar:
        for item in members:
            if isinstance(item, bytes):
                tar.fileobj.write(item)
                tar.offset += len(item)
            else:
                member_info, body = item
                member_info.size = len(body) if member_info.isreg() else member_info.size
                tar.addfile(member_info, io.BytesIO(body))
    return out.getvalue()


def pattern(size: int, seed: int = 0) -> bytes:
    return bytes((i * 131 + seed) % 251 for i in range(size))


def kitchen_sink(fmt: int) -> bytes:
    """Every kind of entry and every name form the format can hold."""
    long_dir = "/".join(["d" * 40] * 3)  # 122 characters, splits into a ustar prefix
    items = [
        (info("empty"), b""),
        (info("small.txt", mode=0o755, uid=1000, gid=1000), b"hello\n"),
        (info("block.bin"), pattern(512)),
        (info("blocks.bin"), pattern(1537, 3)),
        (info("dir", tarfile.DIRTYPE, mode=0o700), b""),
        (info("dir/sub/", tarfile.DIRTYPE), b""),
        (info(long_dir, tarfile.DIRTYPE), b""),
        (info(long_dir + "/file-in-a-long-dir.txt"), b"deep"),
        (info("dir/link", tarfile.SYMTYPE, linkname="../small.txt"), b""),
        (info("dir/abs", tarfile.SYMTYPE, linkname="/etc/alternatives/x"), b""),
        (info("hard", tarfile.LNKTYPE, linkname="small.txt"), b""),
        (info("dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666), b""),
        (info("dev/sda", tarfile.BLKTYPE, devmajor=8, devminor=0), b""),
        (info("fifo", tarfile.FIFOTYPE), b""),
        (info("contiguous", tarfile.CONTTYPE), b"c" * 10),
        (info("old-regular", tarfile.AREGTYPE), b"a" * 700),
        (info("caf\u00e9/\u65e5\u672c.txt"), b"unicode"),
        (info("old-mtime", mtime=0), b""),
    ]
    if fmt != tarfile.USTAR_FORMAT:
        items += [
            (info("n" * 101), b"a name just over 100"),
            (info("/".join(["x" * 90] * 3) + "/" + "y" * 200), b"a name over 255"),
            (info("long-link", tarfile.SYMTYPE, linkname="t" * 150), b""),
            (info("long-hard", tarfile.LNKTYPE, linkname="n" * 101), b""),
            (info("not-utf8-\udce9\udcff"), b"latin-1 bytes in the name"),
            (info("big-ids", uid=2**32 - 2, gid=8**7), b""),
            (info("n" * 120, tarfile.DIRTYPE), b""),
        ]
    if fmt == tarfile.GNU_FORMAT:
        items += [
            (info("negative-mtime", mtime=-86400), b""),
            (info("big-dev", tarfile.BLKTYPE, devmajor=2**21, devminor=5), b""),
        ]
    if fmt == tarfile.PAX_FORMAT:
        items += [
            (info("fraction", mtime=1_700_000_000.123456), b"f"),
            (info("negative-fraction", mtime=-1.5), b""),
            (info("xattrs", pax_headers={
                "SCHILY.xattr.user.text": "plain",
                "SCHILY.xattr.user.binary": b"\x00\xff\n=\x80 ".decode("utf-8", "surrogateescape"),
                "SCHILY.xattr.security.capability": b"\x01\x00\x00\x02\x00 \x00\x00".decode(
                    "utf-8", "surrogateescape"),
                "SCHILY.xattr.user.empty": "",
            }), b"with xattrs"),
            (info("exact", pax_headers={"mtime": "1700000000.1234567891"}), b""),
            (info("comment", pax_headers={"comment": "ignored", "atime": "1.5", "ctime": "2"}), b""),
        ]
    return archive(items, fmt, pax_headers={"comment": "global", "SCHILY.xattr.user.global": "g"}
                   if fmt == tarfile.PAX_FORMAT else None)


# -- differential: tarfile's archives ---------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("sizes", [1 << 20, 512, 511, 513, 7, 1024, [1, 511, 2, 1000, 513]],
                         ids=lambda sizes: str(sizes))
def test_kitchen_sink_equals_tarfile(fmt, sizes):
    data = kitchen_sink(FORMATS[fmt])
    expected = reference(data)
    assert len(expected) >= 18
    assert read(data, sizes) == expected


@pytest.mark.parametrize("fmt", FORMATS)
def test_random_chunk_sizes_equal_tarfile(fmt):
    data = kitchen_sink(FORMATS[fmt])
    expected = reference(data)
    rng = random.Random(fmt)
    for _ in range(20):
        assert read(data, [rng.randint(1, 3000) for _ in range(50)]) == expected


def test_one_byte_chunks():
    data = archive([(info("a"), b"x" * 600), (info("d", tarfile.DIRTYPE), b""),
                    (info("l" * 120, tarfile.SYMTYPE, linkname="k" * 130), b""),
                    (info("x", pax_headers={"SCHILY.xattr.user.a": "1"}), b"!")], tarfile.PAX_FORMAT)
    assert read(data, 1) == reference(data)


def test_what_the_entries_hold():
    """The fields spelled out once, not only compared with tarfile."""
    data = kitchen_sink(tarfile.PAX_FORMAT)
    entries = {entry["name"]: (entry, body) for entry, body in read(data, 513)}
    small, body = entries["small.txt"]
    assert (small["type"], small["mode"], small["uid"], small["size"], body) == (b"0", 0o755, 1000, 6, b"hello\n")
    assert small["xattrs"] == {"user.global": b"g"}  # from the global header
    assert entries["dir/sub"][0]["type"] == b"5"
    assert entries["contiguous"][0]["type"] == entries["old-regular"][0]["type"] == b"0"
    assert entries["dev/null"][0]["type"] == b"3" and entries["dev/null"][0]["devminor"] == 3
    assert entries["hard"][0]["type"] == b"1" and entries["hard"][0]["linkname"] == "small.txt"
    assert entries["fifo"][0]["type"] == b"6"
    assert entries["fraction"][0]["mtime_ns"] == 1_700_000_000_123_456_000
    assert entries["negative-fraction"][0]["mtime_ns"] == -1_500_000_000
    assert entries["exact"][0]["mtime_ns"] == 1_700_000_000_123_456_789
    assert entries["not-utf8-\udce9\udcff"][1] == b"latin-1 bytes in the name"
    xattrs = entries["xattrs"][0]["xattrs"]
    assert xattrs["user.binary"] == b"\x00\xff\n=\x80 "
    assert xattrs["security.capability"] == b"\x01\x00\x00\x02\x00 \x00\x00"
    assert "user.empty" not in xattrs  # an empty value is no value, as in Go
    assert entries["big-ids"][0]["uid"] == 2**32 - 2


def test_entry_methods():
    data = kitchen_sink(tarfile.GNU_FORMAT)
    reader = TarReader(source([data]))
    seen = {}
    while (entry := reader.next()) is not None:
        seen[entry.name] = entry
    checks = {"small.txt": "isreg", "dir": "isdir", "dir/link": "issym", "hard": "islnk", "dev/null": "ischr",
              "dev/sda": "isblk", "fifo": "isfifo"}
    methods = set(checks.values())
    for name, method in checks.items():
        assert getattr(seen[name], method)()
        assert not any(getattr(seen[name], other)() for other in methods - {method})
    assert "small.txt" in repr(seen["small.txt"])
    with pytest.raises(AttributeError):
        seen["fifo"].other = 1  # __slots__


def test_global_headers_apply_to_every_later_entry():
    data = (member(header(b"before"))
            + pax((b"uid", b"7"), (b"SCHILY.xattr.user.g", b"1"), (b"mtime", b"5.5"), type=b"g")
            + member(header(b"plain", uid=1))
            + pax((b"uid", b"8"), (b"SCHILY.xattr.user.g", b""))  # a local override, a deletion
            + member(header(b"overridden", uid=1))
            + pax((b"uid", b""), type=b"g")  # deletes the global uid
            + member(header(b"after", uid=1)) + END)
    got = {entry["name"]: entry for entry, _ in read(data)}
    assert set(got) == {"before", "plain", "overridden", "after"}  # no entry for a 'g' header
    assert (got["before"]["uid"], got["before"]["xattrs"]) == (0, {})
    assert (got["plain"]["uid"], got["plain"]["xattrs"], got["plain"]["mtime_ns"]) == (7, {"user.g": b"1"},
                                                                                        5_500_000_000)
    assert (got["overridden"]["uid"], got["overridden"]["xattrs"]) == (8, {})
    assert (got["after"]["uid"], got["after"]["xattrs"]) == (1, {"user.g": b"1"})


def test_pax_records():
    data = (pax((b"path", b"pax/name"), (b"linkpath", b"pax/target"), (b"size", b"3"), (b"uid", b"4294967294"),
                (b"gid", b"9"), (b"mtime", b"1.1234567899"), (b"hdrcharset", b"BINARY"),
                (b"uname", b"u"), (b"gname", b"g"), (b"atime", b"x"), (b"comment", b"any=thing\n"),
                (b"other.vendor.key", b"v"))
            + member(header(b"header/name", size=0, linkname=b"header/target"), b"abc") + END)
    [(entry, body)] = read(data)
    assert entry["name"] == "pax/name" and entry["linkname"] == "pax/target"
    assert (entry["size"], body, entry["uid"], entry["gid"]) == (3, b"abc", 2**32 - 2, 9)
    assert entry["mtime_ns"] == 1_123_456_789


def test_pax_values_are_not_cut():
    """A NUL in a PAX path is kept for the unpacker to refuse; newlines and '=' too."""
    data = pax((b"path", b"evil\0name"), (b"SCHILY.xattr.user.x", b"a=b\nc\0")) + member(header(b"x")) + END
    [(entry, _)] = read(data)
    assert entry["name"] == "evil\0name"
    assert entry["xattrs"] == {"user.x": b"a=b\nc\0"}


@pytest.mark.parametrize("text, ns", [(b"0", 0), (b"1.", 1_000_000_000), (b"-1.5", -1_500_000_000),
                                      (b"12.000000001999", 12_000_000_001), (b"00012.5", 12_500_000_000)])
def test_pax_times(text, ns):
    [(entry, _)] = read(pax((b"mtime", text)) + member(header(b"x")) + END)
    assert entry["mtime_ns"] == ns


def test_names_and_precedence():
    # PAX path wins over a GNU long name, whichever comes first; the ustar prefix counts
    # only with the POSIX magic (star's is shorter, its times follow).
    data = (member(header(b"././@LongLink", type=b"L", size=10), b"gnu/name\0\0")
            + pax((b"path", b"pax/name"))
            + member(header(b"hdr"))
            + member(header(b"././@LongLink", type=b"K", size=9), b"gnu/link\0")
            + member(header(b"sym", type=b"2", linkname=b"hdr-link"))
            + member(header(b"name", prefix=b"the/prefix"))
            + member(header(b"gnu", prefix=b"not-a-prefix", magic=b"ustar  \0"))
            + member(header(b"v7", prefix=b"not-a-prefix", magic=bytes(8)))
            + member(header(b"star", prefix=b"p" * 131, raw={476: b"00012345670\0", 488: b"00012345670\0",
                                                              508: b"tar\0"}))
            + END)
    names = [(entry["name"], entry["linkname"]) for entry, _ in read(data)]
    assert names == [("pax/name", ""), ("sym", "gnu/link"), ("the/prefix/name", ""), ("gnu", ""), ("v7", ""),
                     ("p" * 131 + "/star", "")]


def test_types_and_bodies():
    data = (member(header(b"old-dir/", type=b"\0", size=0))
            + member(header(b"regular-dir/", type=b"0", size=5), b"12345")  # its body is skipped
            + member(header(b"dir///", type=b"5"))
            + member(header(b"symlink", type=b"2", size=700, linkname=b"t"))  # no body, whatever size says
            + member(header(b"volume", type=b"V", size=600), b"v" * 600)  # unknown: kept, body readable
            + member(header(b"after")) + END)
    got = [(entry["name"], entry["type"], entry["size"], body) for entry, body in read(data)]
    assert got == [("old-dir", b"5", 0, b""), ("regular-dir", b"5", 5, b"12345"), ("dir", b"5", 0, b""),
                   ("symlink", b"2", 0, b""), ("volume", b"V", 600, b"v" * 600), ("after", b"0", 0, b"")]


def signed_sum_header(name: bytes) -> bytes:
    """A header whose checksum is the sum of its bytes as signed chars (old tars)."""
    block = bytearray(header(name))
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(b - 256 if b > 127 else b for b in block)
    return bytes(block)


def test_number_encodings():
    data = (member(header(b"spaces", raw={100: b"   644 \0", 108: b" 12\0    ", 116: b"\0garbage"}))
            + member(header(b"base256", raw={124: b"\x80" + bytes(10) + b"\x05", 108: b"\x80\0\0\0\xff\xff\xff\xfe"}),
                     b"12345")
            + member(header(b"negative-mtime", raw={136: b"\xff" * 12}))
            + member(header(b"empty-fields", raw={100: bytes(8), 136: b" " * 12}))
            + member(signed_sum_header(b"signed\xff\xfe"))
            + END)
    got = [(entry["name"], entry["mode"], entry["uid"], entry["gid"], entry["size"], entry["mtime_ns"], body)
           for entry, body in read(data)]
    assert got == [("spaces", 0o644, 0o12, 0, 0, 0, b""), ("base256", 0o644, 2**32 - 2, 0, 5, 0, b"12345"),
                   ("negative-mtime", 0o644, 0, 0, 0, -10**9, b""), ("empty-fields", 0, 0, 0, 0, 0, b""),
                   ("signed\udcff\udcfe", 0o644, 0, 0, 0, 0, b"")]


# -- the end of the archive ---------------------------------------------------------------------


def test_end_without_end_blocks():
    data = member(header(b"a", size=3), b"abc") + member(header(b"b"))
    assert [entry["name"] for entry, _ in read(data)] == ["a", "b"]
    assert read(b"") == []


def test_garbage_after_the_end_is_drained():
    garbage = os.urandom(5000)
    for end in (bytes(512), END):  # one zero block is enough
        data = member(header(b"a", size=3), b"abc") + end + garbage
        chunks = cut(data, 1000)
        served = []

        def next_chunk():
            chunk = chunks.pop(0) if chunks else b""
            served.append(len(chunk))
            return chunk

        reader = TarReader(next_chunk)
        assert reader.next().name == "a"
        assert reader.next() is None
        assert reader.next() is None
        reader.drain()
        assert sum(served) == len(data) and served[-1] == 0


def test_drain_midway_reads_everything():
    chunks = cut(kitchen_sink(tarfile.GNU_FORMAT), 4096)
    count = len(chunks)
    reader = TarReader(source(chunks))
    reader.next()
    next(reader.body(), None)
    reader.drain()
    assert reader._next_chunk() == b"" and count > 3  # the source is used up


# -- bodies ---------------------------------------------------------------------------------------


def test_bodies_partly_read_are_skipped():
    data = archive([(info("a"), pattern(5000)), (info("b"), pattern(3000, 1)), (info("c"), b"")],
                   tarfile.PAX_FORMAT)
    reader = TarReader(source(cut(data, 1000)))
    assert reader.next().name == "a"
    first = next(reader.body())
    assert bytes(first) == pattern(5000)[:len(first)]
    entry = reader.next()
    assert entry.name == "b"
    body = reader.body()
    got = bytes(next(body))
    assert reader.body() is body  # asked again, it continues
    got += b"".join(reader.body())
    assert got == pattern(3000, 1)
    assert reader.next().name == "c" and list(reader.body()) == []
    assert reader.next() is None


def test_an_old_body_iterator_stops_at_the_next_entry():
    data = archive([(info("a"), pattern(3000)), (info("b"), b"b" * 3000)], tarfile.GNU_FORMAT)
    reader = TarReader(source(cut(data, 512)))
    reader.next()
    old = reader.body()
    next(old)
    assert reader.next().name == "b"
    assert list(old) == []
    assert b"".join(reader.body()) == b"b" * 3000


def test_pieces_are_views_of_the_chunks():
    data = archive([(info("big"), pattern(300_000))], tarfile.PAX_FORMAT)
    chunks = cut(data, 65536)
    reader = TarReader(source(chunks))
    reader.next()
    pieces = list(reader.body())
    assert all(any(piece.obj is chunk for chunk in chunks) for piece in pieces)
    assert len(pieces) == 5 and b"".join(pieces) == pattern(300_000)  # 65,024 bytes, then whole chunks


def test_other_bytes_like_chunks_are_copied_once():
    data = archive([(info("a"), b"abc")], tarfile.PAX_FORMAT)
    chunks = [bytearray(data[:700]), memoryview(data[700:])]
    reader = TarReader(source(chunks))
    reader.next()
    [piece] = reader.body()
    assert type(piece.obj) is bytes and bytes(piece) == b"abc"


# -- errors ----------------------------------------------------------------------------------------


def error_of(data: bytes, sizes: int | Iterable[int] = 1 << 20) -> str:
    result = outcome(data, sizes)
    assert isinstance(result, InvalidTar), f"no error: {result}"
    assert isinstance(result, UnpackError)
    message = str(result)
    assert "\n" not in message
    return message


def test_checksum_mismatch_names_the_offset():
    good = member(header(b"a", size=3), b"abc")
    bad = bytearray(header(b"b"))
    bad[0] ^= 1
    message = error_of(good + bytes(bad) + END)
    assert message == "damaged tar header at offset 1024: checksum mismatch"
    # also through the general parser, and for an all-zero checksum field
    assert "checksum" in error_of(header(b"x", raw={100: b"   644 \0"}, chksum=5) + END)
    assert "checksum" in error_of(header(b"x", raw={148: bytes(8)}, chksum=0) + END)


@pytest.mark.parametrize("offset, field", [(100, b"0000z44\0"), (124, b"0000000001 2"), (108, b"+000001\0"),
                                           (136, b"0o0000000001"), (116, b"00_00001"), (124, b"99999999999\0")])
def test_invalid_numbers(offset, field):
    message = error_of(member(header(b"x", raw={offset: field})) + END)
    assert message.startswith("damaged tar header at offset 0: invalid")


@pytest.mark.parametrize("offset, field, what", [
    (124, b"\xff" * 12, "negative size"),
    (124, b"\x80" + b"\xff" * 11, "size field out of range"),
])
def test_base256_out_of_bounds(offset, field, what):
    assert error_of(member(header(b"x", raw={offset: field})) + END) == f"damaged tar header at offset 0: {what}"


@pytest.mark.parametrize("offset, field, what, value", [
    (108, b"\xff\xff\xff\xff\xff\xff\xff\xfe", "uid", -2),
    (116, b"\xc0" + bytes(7), "gid", -(1 << 62)),
])
def test_negative_ids_are_read_for_the_unpacker_to_judge(offset, field, what, value):
    """Go reads them; the unpacker refuses them naming the entry (the stream is sound)."""
    assert read(member(header(b"x", raw={offset: field})) + END)[0][0][what] == value


def test_negative_ids_in_pax_records_are_read():
    body = record(b"uid", b"-1") + record(b"gid", b"-9")
    data = member(header(b"PaxHeaders/x", type=b"x", size=len(body)), body) + member(header(b"x")) + END
    fields = read(data)[0][0]
    assert (fields["uid"], fields["gid"]) == (-1, -9)


@pytest.mark.parametrize("body", [
    b"99 path=foo\n", b"5 path=foo\n", b"13 path=foo\n", b"11 path=foo!", b"11 pathfoo\n\n",
    b"x path=foo\n", b"-11 path=foo\n", b"11path=foo\n\n", b"6 =ab\n", record(b"path", b"foo") + b"\0junk",
    record(b"size", b"x"), record(b"size", b"-1"), record(b"GNU.sparse.numbytes", b"1"),
], ids=repr)
def test_pax_lies(body):
    data = member(header(b"PaxHeaders/x", type=b"x", size=len(body)), body) + member(header(b"x")) + END
    message = error_of(data)
    assert message.startswith("invalid PAX record at offset 0: ")


@pytest.mark.parametrize("body", [
    record(b"uid", b"1.5"), record(b"uid", b"--1"), record(b"mtime", b".5"), record(b"mtime", b"1e10"),
    record(b"mtime", b"9" * 40), record(b"gid", b"9" * 30),
], ids=repr)
def test_bad_pax_values_name_their_entry(body):
    """The stream is sound, one value is not: the error names the entry it belongs to."""
    data = member(header(b"PaxHeaders/x", type=b"x", size=len(body)), body) + member(header(b"x")) + END
    assert error_of(data).startswith("entry 'x': invalid PAX record at offset 0: ")


def test_pax_padding_after_the_records_is_accepted():
    body = record(b"path", b"padded") + bytes(20)
    data = member(header(b"PaxHeaders/x", type=b"x", size=len(body)), body) + member(header(b"x")) + END
    assert read(data)[0][0]["name"] == "padded"


def endless(prefix: list[bytes], filler: bytes = b"9" * 65536) -> tuple[Callable[[], bytes], list[int]]:
    """A source that never ends (``prefix``'s chunks, then ``filler`` for ever), and the
    sizes it served."""
    served: list[int] = []
    chunks = iter(prefix)

    def next_chunk():
        chunk = next(chunks, filler)
        served.append(len(chunk))
        return chunk

    return next_chunk, served


@pytest.mark.parametrize("type", [b"x", b"g", b"L", b"K"])
def test_a_special_header_claiming_gigabytes_is_not_read(type):
    next_chunk, served = endless([header(b"PaxHeaders/x", type=type, size=8**11 - 1)])
    with pytest.raises(InvalidTar, match=r"^the headers of the entry at offset 0 are larger than 2 MiB$"):
        TarReader(next_chunk).next()
    assert sum(served) <= 512 + 65536


def test_many_special_headers_are_bounded():
    one = pax((b"comment", b"c" * 400))
    next_chunk, served = endless(cut(one * 3000, 65536))
    with pytest.raises(InvalidTar, match="larger than 2 MiB"):
        TarReader(next_chunk).next()
    assert sum(served) <= MAX_HEADER_BYTES + 65536
    # just below the bound is fine: one PAX header of 1.5 MiB
    value = os.urandom(3 << 19)
    [(entry, _)] = read(pax((b"SCHILY.xattr.user.big", value)) + member(header(b"x")) + END, 100_000)
    assert entry["xattrs"]["user.big"] == value


def test_global_records_are_bounded():
    data = b"".join(pax((b"SCHILY.xattr.user.%d" % i, b"v" * 500_000), type=b"g") + member(header(b"x"))
                    for i in range(5))
    assert "global PAX records" in error_of(data + END)


@pytest.mark.parametrize("special", [
    member(header(b"././@LongLink", type=b"L", size=5), b"name\0"),
    member(header(b"././@LongLink", type=b"K", size=5), b"link\0"),
    pax((b"path", b"p")),
])
def test_special_headers_need_an_entry(special):
    assert "followed by the end of the archive" in error_of(special + END)
    assert error_of(special) == "tar stream ends inside the entry at offset 0 (truncated)"


def test_truncation_anywhere_is_an_error_except_between_entries():
    entries = [member(header(b"a", size=700), pattern(700)),
               pax((b"path", b"b" * 200)) + member(header(b"b", size=3), b"xyz"),
               member(header(b"c"))]
    data = b"".join(entries) + END
    boundaries = set(itertools.accumulate([0] + [len(e) for e in entries]))
    for length in range(len(data) + 1):
        result = outcome(data[:length], 256)
        if length in boundaries or length >= len(data) - 512:  # one zero block ends it
            assert not isinstance(result, InvalidTar), (length, result)
        else:
            assert isinstance(result, InvalidTar), length
            assert "(truncated)" in str(result), (length, result)


def test_a_truncated_body_is_an_error_when_read():
    data = member(header(b"a", size=5000), pattern(5000))[:3000]
    reader = TarReader(source(cut(data, 1000)))
    reader.next()
    with pytest.raises(InvalidTar, match=r"^tar stream ends inside the entry at offset 0 \(truncated\)$"):
        list(reader.body())
    with pytest.raises(InvalidTar):  # errors stay
        reader.next()


def test_errors_stay():
    bad = bytearray(header(b"a"))
    bad[3] ^= 0xFF
    reader = TarReader(source([bytes(bad) + END]))
    for _ in range(2):
        with pytest.raises(InvalidTar, match="checksum"):
            reader.next()


def test_errors_of_the_source_pass_through():
    data = member(header(b"a", size=3), b"abc")
    chunks = [data[:600]]

    def next_chunk():
        if chunks:
            return chunks.pop()
        raise zlib.error("Error -3 while decompressing data: invalid block type")

    reader = TarReader(next_chunk)
    assert reader.next().name == "a"
    with pytest.raises(zlib.error):
        reader.next()


# -- sparse files -----------------------------------------------------------------------------------


SPARSE_FORMATS = {
    "gnu": ["--format=gnu"],
    "pax-0.0": ["--format=posix", "--sparse-version=0.0"],
    "pax-0.1": ["--format=posix", "--sparse-version=0.1"],
    "pax-1.0": ["--format=posix", "--sparse-version=1.0"],
}
SPARSE_FILES = {
    "three-fragments": (10 << 20, [(1_000_000, b"hello"), (5_000_000, b"world" * 1000), (8_000_000, b"end")]),
    "data-at-both-ends": (3 << 20, [(0, b"start" * 2000), ((3 << 20) - 4, b"last")]),
    "all-hole": (5 << 20, []),
    "many-fragments": (12 << 20, [(i * 120_000, b"%d" % i * 100) for i in range(100)]),
}


def make_sparse(path, size: int, writes: list[tuple[int, bytes]]) -> None:
    with open(path, "wb") as f:
        f.truncate(size)
        for offset, data in writes:
            f.seek(offset)
            f.write(data)


@pytest.mark.parametrize("fmt", SPARSE_FORMATS)
@pytest.mark.parametrize("case", SPARSE_FILES)
def test_gnu_tar_sparse_files(tmp_path, fmt, case):
    tar = require("tar")
    size, writes = SPARSE_FILES[case]
    make_sparse(tmp_path / "sparse.img", size, writes)
    content = (tmp_path / "sparse.img").read_bytes()
    (tmp_path / "after.txt").write_bytes(b"after the sparse file")
    path = tmp_path / "out.tar"
    subprocess.run([tar, "--sparse", *SPARSE_FORMATS[fmt], "-cf", str(path), "-C", str(tmp_path),
                    "sparse.img", "after.txt"], check=True)
    data = path.read_bytes()
    assert len(data) < size  # stored sparse indeed
    for sizes in (1 << 20, 4096, 511):
        got = read(data, sizes)
        assert [(entry["name"], entry["type"], entry["size"]) for entry, _ in got] == [
            ("sparse.img", b"0", size), ("after.txt", b"0", 21)]
        assert got[0][1] == content and got[1][1] == b"after the sparse file"
    assert got == reference(data)  # tarfile reads all four formats too: every field the same


def test_sparse_holes_come_in_bounded_pieces(tmp_path):
    tar = require("tar")
    make_sparse(tmp_path / "huge.img", 3 << 30, [(1 << 30, b"middle"), ((3 << 30) - 3, b"end")])
    path = tmp_path / "out.tar"
    subprocess.run([tar, "--sparse", "--format=posix", "-cf", str(path), "-C", str(tmp_path), "huge.img"],
                   check=True)
    reader = TarReader(source(cut(path.read_bytes(), 1 << 20)))
    entry = reader.next()
    assert entry.size == 3 << 30
    position, stored = 0, bytearray()
    for piece in reader.body():
        assert 0 < len(piece) <= tarstream.ZERO_PIECE_SIZE
        if piece.obj is not tarstream._ZEROS:
            assert position in (1 << 30, (3 << 30) - len(piece)), position  # a block of data each
            stored += piece
        position += len(piece)
    assert position == 3 << 30
    written = bytes(stored).strip(b"\0")
    assert written.startswith(b"middle") and written.endswith(b"end") and not written[6:-3].strip(b"\0")
    assert reader.next() is None


def test_a_sparse_body_left_unread_is_skipped(tmp_path):
    tar = require("tar")
    make_sparse(tmp_path / "s.img", 1 << 20, [(1000, b"x" * 5000), (600_000, b"y" * 100)])
    (tmp_path / "b").write_bytes(b"b")
    for fmt in SPARSE_FORMATS.values():
        path = tmp_path / "out.tar"
        subprocess.run([tar, "--sparse", *fmt, "-cf", str(path), "-C", str(tmp_path), "s.img", "b"], check=True)
        reader = TarReader(source(cut(path.read_bytes(), 700)))
        reader.next()
        body = reader.body()
        next(body), next(body)  # a hole, then part of the data
        entry = reader.next()
        assert entry.name == "b" and b"".join(reader.body()) == b"b"


def sparse_area(pairs: list[tuple[int, int]]) -> bytes:
    """Old GNU sparse entries: offset and length, 12 octal bytes each."""
    return b"".join(octal(offset, 12) + octal(length, 12) for offset, length in pairs)


def old_gnu_sparse(fragments: list[tuple[int, int]], realsize: int, data: bytes,
                   magic: bytes = b"ustar  \0") -> bytes:
    """An old GNU sparse entry with up to four fragments, in its header."""
    raw = {386: sparse_area(fragments), 483: octal(realsize, 12)}
    return member(header(b"sparse", type=b"S", size=len(data), magic=magic, raw=raw), data)


def test_old_gnu_sparse_extension_blocks():
    # 30 fragments: 4 in the header, 21 in a first extension block, 5 in a second
    fragments = [(i * 1000, 10) for i in range(30)]
    data = bytes(range(10)) * 30
    raw = {386: sparse_area(fragments[:4]), 482: b"\x01", 483: octal(40_000, 12)}
    block = (header(b"sparse", type=b"S", size=len(data), magic=b"ustar  \0", raw=raw)
             + sparse_area(fragments[4:25]) + b"\x01" + bytes(7)
             + sparse_area(fragments[25:]).ljust(512, b"\0"))
    [(entry, body)] = read(member(block, data) + END, 300)
    expected = bytearray(40_000)
    for offset, _ in fragments:
        expected[offset:offset + 10] = bytes(range(10))
    assert entry["size"] == 40_000 and body == bytes(expected)


@pytest.mark.parametrize("fragments, realsize, data, message", [
    ([(0, 10), (5, 10)], 100, b"x" * 20, "overlap"),
    ([(10, 5), (0, 5)], 100, b"x" * 10, "overlap"),
    ([(0, 10), (95, 10)], 100, b"x" * 20, "past the real size"),
    ([(0, 10)], 100, b"x" * 20, "the fragments hold 10 bytes, the entry 20"),
])
def test_old_gnu_sparse_maps_are_checked(fragments, realsize, data, message):
    assert message in error_of(old_gnu_sparse(fragments, realsize, data) + END)


def test_old_gnu_sparse_real_size_not_negative():
    data = bytearray(old_gnu_sparse([(0, 3)], 10, b"abc"))
    data[483:495] = b"\xff" * 12
    refix(data, 0)
    assert "negative real size" in error_of(bytes(data) + END)


def test_old_gnu_sparse_needs_the_gnu_magic():
    assert "GNU magic" in error_of(old_gnu_sparse([(0, 3)], 10, b"abc", magic=b"ustar\x0000") + END)


@pytest.mark.parametrize("records, body, message", [
    ([(b"GNU.sparse.size", b"100"), (b"GNU.sparse.numblocks", b"2"), (b"GNU.sparse.map", b"0,5")], b"x" * 5,
     "numblocks does not match"),
    ([(b"GNU.sparse.size", b"100"), (b"GNU.sparse.numblocks", b"1"), (b"GNU.sparse.map", b"0,a")], b"x" * 5,
     "is not a number"),
    ([(b"GNU.sparse.size", b"100"), (b"GNU.sparse.map", b"0,5")], b"x" * 5, "no GNU.sparse.numblocks"),
    ([(b"GNU.sparse.size", b"10"), (b"GNU.sparse.numblocks", b"1"), (b"GNU.sparse.map", b"8,5")], b"x" * 5,
     "past the real size"),
    ([(b"GNU.sparse.major", b"1"), (b"GNU.sparse.minor", b"0"), (b"GNU.sparse.realsize", b"100")],
     b"99999999\n".ljust(512, b"\0"), "claims 99999999 fragments"),
    ([(b"GNU.sparse.major", b"1"), (b"GNU.sparse.minor", b"0"), (b"GNU.sparse.realsize", b"100")],
     b"2\n0\n", "runs past the entry's data"),
    ([(b"GNU.sparse.major", b"1"), (b"GNU.sparse.minor", b"0"), (b"GNU.sparse.realsize", b"100")],
     b"1\n0\n-5\n".ljust(512, b"\0"), "is not a number"),
])
def test_pax_sparse_maps_are_checked(records, body, message):
    data = pax(*records) + member(header(b"sparse", size=len(body)), body) + END
    assert message in error_of(data)


def test_pax_sparse_only_on_regular_files():
    data = pax((b"GNU.sparse.major", b"1"), (b"GNU.sparse.minor", b"0")) + member(header(b"s", type=b"2")) + END
    assert "not a regular file" in error_of(data)


def test_a_pax_10_map_is_bounded():
    """A map that claims many fragments on an endless body stops at the header bound."""
    start = pax((b"GNU.sparse.major", b"1"), (b"GNU.sparse.minor", b"0"), (b"GNU.sparse.realsize", b"1"))
    next_chunk, served = endless([start + header(b"s", size=8**11 - 1) + b"500000\n"], b"11\n" * 21845)
    with pytest.raises(InvalidTar, match="larger than 2 MiB"):
        TarReader(next_chunk).next()
    assert sum(served) <= MAX_HEADER_BYTES + 2 * 65536


def test_an_old_sparse_body_iterator_stops_at_the_next_entry():
    records = [(b"GNU.sparse.size", b"5000000"), (b"GNU.sparse.numblocks", b"1"), (b"GNU.sparse.map", b"4999999,1")]
    data = pax(*records) + member(header(b"s", size=1), b"!") + member(header(b"after", size=1), b"a") + END
    reader = TarReader(source([data]))
    reader.next()
    old = reader.body()
    assert len(next(old)) == tarstream.ZERO_PIECE_SIZE
    assert reader.next().name == "after"
    assert list(old) == []


def test_pax_sparse_00_pairs_in_order():
    records = [(b"GNU.sparse.size", b"20"), (b"GNU.sparse.numblocks", b"2"),
               (b"GNU.sparse.offset", b"2"), (b"GNU.sparse.numbytes", b"3"),
               (b"GNU.sparse.offset", b"10"), (b"GNU.sparse.numbytes", b"2")]
    [(entry, body)] = read(pax(*records) + member(header(b"s", size=5), b"abcde") + END)
    assert body == b"\0\0abc\0\0\0\0\0de" + bytes(8)
    swapped = records[:3] + [records[4], records[3]] + records[5:]
    assert "out of order" in error_of(pax(*swapped) + member(header(b"s", size=5), b"abcde") + END)


def test_pax_sparse_01_with_its_version():
    records = [(b"GNU.sparse.major", b"0"), (b"GNU.sparse.minor", b"1"), (b"GNU.sparse.name", b"real/name"),
               (b"GNU.sparse.realsize", b"5"), (b"GNU.sparse.numblocks", b"1"), (b"GNU.sparse.map", b"1,2")]
    [(entry, body)] = read(pax(*records) + member(header(b"GNUSparseFile.0/name", size=2), b"ab") + END)
    assert (entry["name"], entry["size"], body) == ("real/name", 5, b"\0ab\0\0")


@pytest.mark.parametrize("records", [
    [(b"GNU.sparse.major", b"2"), (b"GNU.sparse.minor", b"0")],  # an unknown version
    [(b"GNU.sparse.name", b"other"), (b"GNU.sparse.realsize", b"100")],  # no map
])
def test_not_sparse_after_all(records):
    [(entry, body)] = read(pax(*records) + member(header(b"s", size=3), b"abc") + END)
    assert (entry["name"], entry["size"], body) == ("s", 3, b"abc")


# -- Hypothesis: random archives equal what tarfile reads ---------------------------------------------


components = st.text(alphabet=st.sampled_from(list("abcxyz019._- ") + ["\u00e9", "\u65e5", "\udce9", "\udcff"]),
                     min_size=1, max_size=60)
names = st.lists(components, min_size=1, max_size=6).map("/".join)
xattr_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz.", min_size=1, max_size=20).map("user.".__add__)


@st.composite
def entries(draw, fmt: int):
    kind = draw(st.sampled_from([tarfile.REGTYPE, tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE,
                                 tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE,
                                 tarfile.BLKTYPE, tarfile.FIFOTYPE]))
    ids = st.integers(0, 8**7 - 1) if fmt == tarfile.USTAR_FORMAT else st.integers(0, 2**32)
    member_info = info(draw(names), kind, mode=draw(st.integers(0, 0o7777)), uid=draw(ids), gid=draw(ids),
                       uname=draw(st.text(alphabet="abcdef", max_size=40)))
    if fmt == tarfile.PAX_FORMAT:
        member_info.mtime = draw(st.integers(0, 2**33) | st.floats(-1e9, 1e10, allow_nan=False).filter(
            lambda x: "e" not in str(x)))
        member_info.pax_headers = {"SCHILY.xattr." + name: value.decode("utf-8", "surrogateescape")
                                   for name, value in draw(st.dictionaries(xattr_names, st.binary(max_size=30),
                                                                           max_size=3)).items()}
    elif fmt == tarfile.GNU_FORMAT:
        member_info.mtime = draw(st.integers(-(2**40), 2**40))
    else:
        member_info.mtime = draw(st.integers(0, 8**11 - 1))
    if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
        member_info.linkname = draw(names)
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        member_info.devmajor = draw(st.integers(0, 8**7 - 1))
        member_info.devminor = draw(st.integers(0, 8**7 - 1))
    body = b""
    if member_info.isreg():
        size = draw(st.sampled_from([0, 1, 511, 512, 513, 1024]) | st.integers(0, 3000))
        body = pattern(size, draw(st.integers(0, 250)))
    return member_info, body


@st.composite
def archives(draw) -> tuple[int, list]:
    """A format and what to write in it: entries, and global PAX headers before some."""
    fmt = FORMATS[draw(st.sampled_from(sorted(FORMATS)))]
    members: list = []
    for member_info, body in draw(st.lists(entries(fmt), max_size=8)):
        try:
            member_info.tobuf(fmt, "utf-8", "surrogateescape")
        except ValueError:  # the format cannot hold it (a name too long for ustar)
            continue
        if fmt == tarfile.PAX_FORMAT and draw(st.integers(0, 9)) == 0:
            members.append(pax((b"SCHILY.xattr.user.global", draw(st.binary(max_size=10))),
                               (b"comment", b"c"), type=b"g"))
        members.append((member_info, body))
    return fmt, members


@FUZZ
@given(written=archives(), sizes=st.lists(st.integers(1, 1100), min_size=1, max_size=4))
def test_random_archives_equal_tarfile(written, sizes):
    data = archive(written[1], written[0])
    assert read(data, sizes) == reference(data)


# -- Hypothesis: any bytes give entries or InvalidTar, in bounded memory -------------------------------


SEEDS = [kitchen_sink(fmt) for fmt in FORMATS.values()] + [
    pax((b"GNU.sparse.size", b"20"), (b"GNU.sparse.numblocks", b"2"), (b"GNU.sparse.map", b"2,3,10,2"))
    + member(header(b"s", size=5), b"abcde") + END,
    pax((b"GNU.sparse.major", b"1"), (b"GNU.sparse.minor", b"0"), (b"GNU.sparse.realsize", b"100"))
    + member(header(b"s", size=515), b"1\n3\n3\n".ljust(512, b"\0") + b"abc") + END,
    old_gnu_sparse([(0, 3), (50, 2)], 60, b"abcde") + END,
    member(header(b"././@LongLink", type=b"L", size=300), b"l" * 300) + member(header(b"x", size=3), b"abc") + END,
]


def consume(data: bytes, sizes: list[int], bodies: list[int]) -> None:
    """Read everything, taking at most a few pieces of each body."""
    reader = TarReader(source(cut(data, sizes)))
    for take in itertools.cycle(bodies):
        if reader.next() is None:
            break
        for _ in zip(range(take), reader.body()):
            pass
    reader.drain()


def header_blocks(data: bytes) -> list[int]:
    return [at for at in range(0, len(data) - 511, 512) if data[at + 257:at + 262] == b"ustar"]


@st.composite
def hostile(draw) -> bytes:
    """Any bytes, or a valid archive with a few bytes changed (mostly in its header
    blocks) and perhaps cut short."""
    if draw(st.integers(0, 3)) == 0:
        return draw(st.binary(max_size=3000))
    seed = draw(st.sampled_from(SEEDS))
    headers = header_blocks(seed)
    offsets = st.integers(0, len(seed) - 1) | st.tuples(st.sampled_from(headers), st.integers(0, 511)).map(sum)
    changes = draw(st.lists(st.tuples(offsets, st.integers(0, 255)), max_size=6))
    length = draw(st.just(len(seed)) | st.integers(0, len(seed)))
    return mutate(seed, changes, draw(st.booleans()), length)


@FUZZ  # (chunks of a few bytes are the differential tests' business: here they only cost time)
@given(data=hostile(), sizes=st.lists(st.integers(16, 4096), min_size=1, max_size=3),
       bodies=st.lists(st.integers(0, 4), min_size=1, max_size=3))
def test_any_bytes_give_entries_or_invalid_tar(data, sizes, bodies):
    tracemalloc.start()
    try:
        try:
            consume(data, sizes, bodies)
        except InvalidTar as exc:
            assert str(exc) and "\n" not in str(exc)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * MAX_HEADER_BYTES + 8 * len(data) + 65536


def mutate(seed: bytes, changes: list[tuple[int, int]], fix: bool, length: int) -> bytes:
    """``seed`` with bytes changed (the checksums of their blocks made right again, when
    ``fix``, so that the damage reaches past the checksum), then cut at ``length``."""
    data = bytearray(seed)
    for offset, value in changes:
        data[offset] = value
        if fix:
            refix(data, offset - offset % 512)
    return bytes(data[:length])
