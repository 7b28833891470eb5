"""A streaming tar reader for layer unpacking: one pass over the uncompressed stream,
bodies handed out as zero-copy views of the chunks read, memory bounded by one entry's
headers, and the reading rules of Go's ``archive/tar`` (what images are written with).

Why not :mod:`tarfile`: on a real layer (tens of thousands of entries, a PAX header on
each) tarfile spends most of its time in per-field Python calls (``nts``/``nti``, a
``struct`` checksum), in its PAX parsing and in copying its stream buffer on every small
read. Here a header is one 512-byte slice, one regular expression that checks and splits
every field at once (a general parser only for the unusual encodings), ``int(..., 8)``
per number and a checksum from two ``zlib.adler32`` calls; PAX records are cut with
``bytes.find``. Bodies are never copied.

The rules followed (``MAX_HEADER_BYTES`` bounds all header bytes of one entry):

- A header block's checksum must match (the unsigned or the signed sum, as tarfile and
  Go accept); otherwise it is an error naming the offset, never the end of the archive.
- Numbers are octal (ending at the first NUL, spaces around allowed, an empty field is 0)
  or GNU base-256 (high bit of the first byte set; two's complement, so negative values
  exist: a negative size is an error, negative ids are returned for the unpacker to
  refuse naming the entry); anything else is an error, as is a value beyond 64 bits.
  PAX ``uid``/``gid`` are signed decimals, as Go reads them. A PAX value that does not
  parse (a time, an id) is an error naming the entry it belongs to; one that breaks the
  stream (``size``, a record's length) names only the offset.
- Strings end at their first NUL. The name is, by precedence: a PAX ``path``, a GNU
  long name (``L``), the header's name with its ``prefix`` when the magic is POSIX's
  (``ustar\\0`` ``00``). The link target likewise (``linkpath``, ``K``, the header).
  Names are UTF-8 decoded with ``surrogateescape`` (bytes that are not UTF-8 survive).
- PAX records are ``"%d %s=%s\\n"`` with a length that must match; a NUL inside a value
  is kept (the unpacker refuses such names rather than see them silently cut). An empty
  value removes the key, as in Go. ``x`` headers apply to the next entry, ``g`` headers
  to every later one (as POSIX has it; tarfile only to those with an ``x`` header too);
  a ``g`` header is not returned, nor counted in the next entry's offset, and may end
  the archive. Read keys: ``path``, ``linkpath``, ``size``, ``uid``, ``gid``, ``mtime``
  (exact nanoseconds), ``SCHILY.xattr.*`` (raw bytes) and ``GNU.sparse.*``; others are
  ignored.
- The typeflag is normalised: ``\\0``, ``0`` and ``7`` are regular files (``0``); a
  ``\\0`` or ``0`` entry whose name ends in ``/`` is a directory (the old convention GNU
  tar follows; tarfile only for ``\\0``; a ``0`` one keeps its body, skipped). Links,
  devices, directories and FIFOs have no body whatever their size field says (as Go and
  tarfile); unknown types are returned as they are, their body skippable. Directory
  names lose their trailing slashes.
- Sparse files in every form Go reads: old GNU (``S``, map in the header and extension
  blocks), PAX 0.0 (``GNU.sparse.offset``/``numbytes`` pairs), 0.1 (``GNU.sparse.map``)
  and 1.0 (map at the start of the body). Maps must be in order, not overlap, stay
  within the real size and account for exactly the stored data. The body is the expanded
  file, holes as zeros in pieces of at most ``ZERO_PIECE_SIZE`` bytes.
- The archive ends at a zero block (one is enough, Go looks for two; whatever follows,
  :meth:`TarReader.drain` reads and ignores), or where the stream ends cleanly between
  entries. A stream ending inside a header, a body or its padding is an error
  ("truncated"), as are extension headers followed by no entry.

Every error is :class:`~contentstore.errors.InvalidTar`, naming the offset.
"""

from __future__ import annotations

import re
import zlib
from typing import Callable, Iterator

from contentstore.errors import InvalidTar

__all__ = ["MAX_HEADER_BYTES", "TarEntry", "TarReader"]

BLOCK_SIZE = 512
#: The most header bytes one entry may have: its header blocks, PAX and GNU long-name
#: bodies, old GNU sparse extension blocks and a PAX 1.0 sparse map (Go allows 1 MiB
#: for each special header); also the bound of the global PAX records kept.
MAX_HEADER_BYTES = 2 << 20
#: The largest piece of zeros a sparse file's hole is yielded in.
ZERO_PIECE_SIZE = 1 << 20

_ZEROS = bytes(ZERO_PIECE_SIZE)  # immutable: hole pieces are views of it
_ZERO_BLOCK = bytes(BLOCK_SIZE)
_INT64_MAX = (1 << 63) - 1
_NS = 10**9

# Typeflags as the header's byte 156 gives them.
_AREG, _REG, _LNK, _SYM, _CHR, _BLK, _DIR, _FIFO, _CONT = 0, *b"01234567"
_PAX, _GLOBAL, _LONGNAME, _LONGLINK, _SPARSE = b"xgLKS"
_SPECIAL = frozenset((_PAX, _GLOBAL, _LONGNAME, _LONGLINK))
_REGULAR = frozenset((_AREG, _REG, _CONT))
_HEADER_ONLY = frozenset((_LNK, _SYM, _CHR, _BLK, _DIR, _FIFO))
_TYPE = tuple(b"0" if i in _REGULAR or i == _SPARSE else bytes((i,)) for i in range(256))

_USTAR_MAGIC = b"ustar\x0000"  # POSIX (ustar and pax): the only form with a name prefix
_GNU_MAGIC = b"ustar  \x00"
_XATTR = b"SCHILY.xattr."

# The common header in one match: every number in the canonical width (zero-padded
# octal ending in NUL; the checksum six digits, NUL, space), as tarfile, GNU tar and
# Go write them, and the strings cut at their first NUL. Other headers go through
# _parse_header.
_FAST_HEADER = re.compile(
    rb"(?s)(?=([^\0]{0,100})).{100}"  # name
    rb"([0-7]{7})\0([0-7]{7})\0([0-7]{7})\0"  # mode, uid, gid
    rb"([0-7]{11})\0([0-7]{11})\0"  # size, mtime
    rb"([0-7]{6})\0 ."  # checksum, typeflag
    rb"(?=([^\0]{0,100})).{100}"  # linkname
    rb"(.{8}).{80}"  # magic and version; uname, gname, devmajor, devminor
    rb"(?=([^\0]{0,155}))"  # prefix
)
_PAX_TIME = re.compile(rb"(-?)([0-9]+)(?:\.([0-9]*))?")
_HIGH_BYTES = bytes(range(128, 256))
_OCTAL_DIGITS = b"01234567"


class TarEntry:
    """One entry of the archive, its extension headers applied.

    ``name`` and ``linkname`` are decoded from UTF-8 with ``surrogateescape``;
    ``type`` is one byte, normalised (``b"0"`` regular, ``b"5"`` directory, ``b"2"``
    symlink, ``b"1"`` hard link, ``b"3"``/``b"4"`` character/block device, ``b"6"``
    FIFO, anything else as found); ``size`` is what :meth:`TarReader.body` yields (the
    expanded size of a sparse file, 0 for types without a body); ``mtime_ns`` is exact
    from a PAX record, else the header's seconds; ``xattrs`` maps attribute names to
    their raw values; ``offset`` is where the entry's first header block starts.
    """

    __slots__ = ("name", "linkname", "type", "mode", "uid", "gid", "size", "mtime_ns",
                 "devmajor", "devminor", "xattrs", "offset")

    def __init__(self, name: str, linkname: str, type: bytes, mode: int, uid: int, gid: int,
                 size: int, mtime_ns: int, devmajor: int, devminor: int,
                 xattrs: dict[str, bytes], offset: int) -> None:
        self.name = name
        self.linkname = linkname
        self.type = type
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.size = size
        self.mtime_ns = mtime_ns
        self.devmajor = devmajor
        self.devminor = devminor
        self.xattrs = xattrs
        self.offset = offset

    def isreg(self) -> bool:
        return self.type == b"0"

    def isdir(self) -> bool:
        return self.type == b"5"

    def issym(self) -> bool:
        return self.type == b"2"

    def islnk(self) -> bool:
        return self.type == b"1"

    def ischr(self) -> bool:
        return self.type == b"3"

    def isblk(self) -> bool:
        return self.type == b"4"

    def isfifo(self) -> bool:
        return self.type == b"6"

    def __repr__(self) -> str:
        return f"<TarEntry {self.name!r} type={self.type!r} size={self.size} offset={self.offset}>"


class TarReader:
    """Reads a tar stream given as chunks: :meth:`next` for each entry, :meth:`body` for
    its data, :meth:`drain` for what follows the archive.

    ``next_chunk()`` returns the next piece of the uncompressed stream (``bytes`` of any
    size), ``b""`` at its end; its exceptions pass through untouched. Only the current
    chunk and the current entry's headers are held; an error is raised again by every
    later call.
    """

    def __init__(self, next_chunk: Callable[[], bytes]) -> None:
        self._next_chunk = next_chunk
        self._buf = b""  # the current chunk
        self._view = memoryview(self._buf)
        self._pos = 0  # where in it the stream is
        self._base = 0  # the stream offset of _buf[0]
        self._eof = False  # next_chunk said the stream ended
        self._end = False  # the archive ended
        self._error: InvalidTar | None = None
        self._global: dict[bytes, bytes] = {}  # records of PAX global headers
        self._budget = MAX_HEADER_BYTES  # header bytes the entry being read may still have
        self._entry = 0  # offset of the current entry
        self._remaining = 0  # bytes of the current entry's body not yet read (as stored)
        self._pad = 0  # padding after them
        self._sparse: list[tuple[int, int]] | None = None  # (offset, length) of data, or None
        self._size = 0  # the current entry's (expanded) size
        self._generation = 0  # which entry a body iterator belongs to
        self._body: Iterator[memoryview] | None = None

    # -- the stream -----------------------------------------------------------------------

    def _fill(self) -> bool:
        """Move on to the next chunk (the current one is used up); False at the end."""
        if self._eof:
            return False
        chunk = self._next_chunk()
        self._base += len(self._buf)
        self._pos = 0
        if not chunk:
            self._eof = True
            self._buf = b""
            self._view = memoryview(self._buf)
            return False
        if type(chunk) is not bytes:  # views of it must stay valid and unchanged
            chunk = bytes(chunk)
        self._buf = chunk
        self._view = memoryview(chunk)
        return True

    def _read(self, n: int, offset: int, eof_ok: bool = False) -> bytes:
        """Exactly ``n`` bytes, copied (headers only); ``b""`` if ``eof_ok`` and the
        stream ends before the first of them."""
        parts = []
        need = n
        while True:
            buf, pos = self._buf, self._pos
            if len(buf) - pos >= need:
                self._pos = pos + need
                parts.append(buf[pos:pos + need])
                return b"".join(parts)
            if pos < len(buf):
                parts.append(buf[pos:])
                need -= len(buf) - pos
                self._pos = len(buf)
            if not self._fill():
                if eof_ok and need == n:
                    return b""
                raise _truncated(offset)

    def _skip(self, n: int, offset: int) -> None:
        while n > len(self._buf) - self._pos:
            n -= len(self._buf) - self._pos
            self._pos = len(self._buf)
            if not self._fill():
                raise _truncated(offset)
        self._pos += n

    def _charge(self, n: int) -> None:
        """Count ``n`` more header bytes against the current entry's budget."""
        self._budget -= n
        if self._budget < 0:
            raise self._too_large()

    def _too_large(self) -> InvalidTar:
        return InvalidTar(f"the headers of the entry at offset {self._entry} are larger than "
                          f"{MAX_HEADER_BYTES >> 20} MiB", self._entry)

    # -- entries --------------------------------------------------------------------------

    def next(self) -> TarEntry | None:
        """The next entry (skipping what was left of the previous body), or ``None`` at
        the end of the archive."""
        if self._error is not None:
            raise self._error
        if self._end:
            return None
        try:
            return self._next()
        except InvalidTar as exc:
            self._error = exc
            self._remaining = self._pad = 0
            raise

    def _next(self) -> TarEntry | None:
        self._generation += 1
        self._body = None
        self._sparse = None
        skip = self._remaining + self._pad
        if skip:
            self._remaining = self._pad = 0
            buf_left = len(self._buf) - self._pos
            if skip <= buf_left:
                self._pos += skip
            else:
                self._skip(skip, self._entry)
        start = self._entry = self._base + self._pos
        budget = MAX_HEADER_BYTES  # header bytes this entry may still have
        local: dict[bytes, bytes] | None = None  # its PAX records
        pairs: list[int] | None = None  # PAX 0.0 sparse offsets and lengths
        long_name = long_link = b""
        adler32 = zlib.adler32

        while True:  # extension headers until the entry's own header
            here = self._base + self._pos
            budget -= BLOCK_SIZE
            if budget < 0:
                raise self._too_large()
            pos = self._pos
            if pos + BLOCK_SIZE <= len(self._buf):
                self._pos = pos + BLOCK_SIZE
                block = self._buf[pos:pos + BLOCK_SIZE]
            else:
                block = self._read(BLOCK_SIZE, start, eof_ok=True)
                if not block:
                    if here != start:
                        raise _truncated(start)
                    self._end = True
                    return None
            match = _FAST_HEADER.match(block)
            if match is not None:
                # Numbers stay text until the entry's own header (extension headers need
                # only their size).
                name, mode, uid, gid, size, mtime, chksum, link, magic, prefix = match.groups()
                # The unsigned sum with the checksum field as spaces: its digits, NUL and
                # space out, 8 spaces in. Each half sums to at most 65,280, below
                # Adler-32's modulus, so its low word is 1 + the exact sum.
                total = (adler32(block[:256]) & 0xFFFF) + (adler32(block[256:]) & 0xFFFF) - 2
                if total - sum(chksum) + 224 != int(chksum, 8):
                    _check_signed_sum(block, int(chksum, 8), here)
                size = int(size, 8)
            elif block == _ZERO_BLOCK:
                if here != start:
                    raise InvalidTar(f"the extension headers of the entry at offset {start} are "
                                     f"followed by the end of the archive, not an entry", start)
                self._end = True
                return None
            else:
                name, mode, uid, gid, size, mtime, link, magic, prefix = _parse_header(block, here)
            typeflag = block[156]
            if typeflag not in _SPECIAL:
                break
            padded = (size + 511) & ~511
            budget -= padded
            if budget < 0:
                raise self._too_large()
            pos = self._pos
            if pos + padded <= len(self._buf):
                self._pos = pos + padded
                data = self._buf[pos:pos + size]
            else:
                data = self._read(padded, start)[:size]
            if typeflag == _PAX:
                if local is None:
                    local = {}
                pairs = _parse_pax(data, local, pairs, here)
            elif typeflag == _GLOBAL:
                self._set_global(data, here)
                if start == here:  # not part of the next entry (as tarfile counts offsets)
                    start = self._entry = self._base + self._pos
            elif typeflag == _LONGNAME:
                long_name = data.split(b"\0", 1)[0]
            else:
                long_link = data.split(b"\0", 1)[0]
        self._budget = budget
        if match is not None:
            mode, uid, gid, mtime = int(mode, 8), int(uid, 8), int(gid, 8), int(mtime, 8)

        if prefix and magic == _USTAR_MAGIC:
            if block[508:512] == b"tar\0":  # star: a shorter prefix, then times
                prefix = block[345:476].split(b"\0", 1)[0]
            if prefix:
                name = prefix + b"/" + name
        records = {**self._global, **local} if self._global and local else (local or self._global)
        mtime_ns = mtime * _NS
        xattrs: dict[str, bytes] = {}
        sparse = False
        invalid: InvalidTar | None = None  # a bad value of this entry's: raised naming it
        for key, value in records.items():
            if not value:  # an empty value removes the key
                continue
            try:
                if key == b"mtime":
                    mtime_ns = _pax_time(value, start)
                elif key == b"path":
                    long_name = value
                elif key == b"linkpath":
                    long_link = value
                elif key == b"size":
                    size = _pax_number(value, key, start)
                elif key == b"uid":
                    uid = _pax_number(value, key, start, signed=True)
                elif key == b"gid":
                    gid = _pax_number(value, key, start, signed=True)
                elif key.startswith(_XATTR):
                    xattrs[key[13:].decode("utf-8", "surrogateescape")] = value
                elif key.startswith(b"GNU.sparse."):
                    sparse = True
            except InvalidTar as exc:
                if key == b"size":  # the stream cannot be followed past it
                    raise
                invalid = invalid or exc
        if long_name:
            name = long_name
        if long_link:
            link = long_link
        if invalid is not None:
            raise InvalidTar(f"entry {name.decode('utf-8', 'surrogateescape')!r}: {invalid}", start)

        realsize = size
        if typeflag == _SPARSE:
            realsize = self._old_gnu_sparse(block, size, start)
        elif sparse or pairs:
            found = self._pax_sparse(records, pairs, typeflag, size, start)
            if found is not None:
                realsize, sparse_name = found
                if sparse_name:
                    name = sparse_name

        entry_type = _TYPE[typeflag]
        if typeflag in _HEADER_ONLY:
            size = realsize = 0
        elif self._sparse is None and (typeflag == _REG or typeflag == _AREG) and name.endswith(b"/"):
            entry_type = b"5"  # the old convention for directories
            if typeflag == _AREG:  # as tarfile and Go: no body
                size = realsize = 0
        if entry_type == b"5":
            name = name.rstrip(b"/")
        devmajor = devminor = 0
        if typeflag == _CHR or typeflag == _BLK:
            devmajor = _number(block[329:337], "devmajor", here)
            devminor = _number(block[337:345], "devminor", here)

        if self._sparse is None:
            self._remaining = size
        self._pad = -size & 511
        self._size = realsize
        return TarEntry(name.decode("utf-8", "surrogateescape"), link.decode("utf-8", "surrogateescape"),
                        entry_type, mode, uid, gid, realsize, mtime_ns, devmajor, devminor, xattrs, start)

    def _set_global(self, data: bytes, offset: int) -> None:
        records: dict[bytes, bytes] = {}
        _parse_pax(data, records, None, offset)
        kept = self._global
        for key, value in records.items():
            if value:
                kept[key] = value
            else:
                kept.pop(key, None)
        if sum(len(key) + len(value) for key, value in kept.items()) > MAX_HEADER_BYTES:
            raise InvalidTar(f"the global PAX records at offset {offset} add up to more than "
                             f"{MAX_HEADER_BYTES >> 20} MiB", offset)

    # -- sparse files ---------------------------------------------------------------------

    def _old_gnu_sparse(self, block: bytes, stored: int, offset: int) -> int:
        """Read an old GNU sparse entry's map (header and extension blocks); its real size."""
        if block[257:265] != _GNU_MAGIC:
            raise _bad_sparse(offset, "an old GNU sparse header without the GNU magic")
        realsize = _number(block[483:495], "real size", offset)
        if realsize < 0:
            raise _bad_sparse(offset, "a negative real size")
        numbers: list[int] = []
        _old_gnu_map(block[386:482], numbers, offset)
        extended = block[482]
        while extended:
            self._charge(BLOCK_SIZE)
            extension = self._read(BLOCK_SIZE, self._entry)
            _old_gnu_map(extension[:504], numbers, offset)
            extended = extension[504]
        self._set_sparse(numbers, realsize, stored, offset)
        return realsize

    def _pax_sparse(self, records: dict[bytes, bytes], pairs: list[int] | None, typeflag: int,
                    stored: int, offset: int) -> tuple[int, bytes] | None:
        """Read a PAX sparse entry's map (0.0, 0.1 or 1.0); its real size and name, or
        None when the records do not make it sparse: an unknown version, or other
        ``GNU.sparse`` records alone (the entry is then a plain file, as in Go)."""
        version = (records.get(b"GNU.sparse.major") or None, records.get(b"GNU.sparse.minor") or None)
        if version == (b"1", b"0"):
            format_10 = True
        elif version in ((b"0", b"0"), (b"0", b"1")):
            format_10 = False
        elif version == (None, None) and (pairs or records.get(b"GNU.sparse.map")
                                          or records.get(b"GNU.sparse.size")):
            format_10 = False  # 0.0 and 0.1 have no version records
        else:
            return None
        if typeflag not in _REGULAR:
            raise _bad_sparse(offset, "sparse records on an entry that is not a regular file")
        size = records.get(b"GNU.sparse.size") or records.get(b"GNU.sparse.realsize")
        realsize = _pax_number(size, b"GNU.sparse.size", offset) if size else stored
        if format_10:
            numbers, stored = self._read_map_10(stored, offset)
        else:
            count = records.get(b"GNU.sparse.numblocks")
            if not count:
                raise _bad_sparse(offset, "no GNU.sparse.numblocks record")
            if pairs:
                numbers = pairs
            else:
                text = records.get(b"GNU.sparse.map", b"")
                numbers = [_sparse_number(value, offset) for value in text.split(b",")] if text else []
            if len(numbers) != 2 * _pax_number(count, b"GNU.sparse.numblocks", offset):
                raise _bad_sparse(offset, "GNU.sparse.numblocks does not match the map")
        self._set_sparse(numbers, realsize, stored, offset)
        return realsize, records.get(b"GNU.sparse.name", b"")

    def _read_map_10(self, stored: int, offset: int) -> tuple[list[int], int]:
        """Read the decimal lines of a PAX 1.0 map from the body: the count, then an
        offset and a length per fragment, padded to a block. Returns the numbers and
        the body bytes left after the map."""
        blocks: list[bytes] = []
        lines = 0
        wanted = 1
        count = -1
        while True:
            while lines < wanted:
                if stored < BLOCK_SIZE:
                    raise _bad_sparse(offset, "the sparse map runs past the entry's data")
                self._charge(BLOCK_SIZE)
                block = self._read(BLOCK_SIZE, self._entry)
                stored -= BLOCK_SIZE
                blocks.append(block)
                lines += block.count(b"\n")
            if count >= 0:
                break
            count = _sparse_number(b"".join(blocks).split(b"\n", 1)[0], offset)
            if count > MAX_HEADER_BYTES // 4:  # each fragment takes 4 bytes at least
                raise _bad_sparse(offset, f"the sparse map claims {count} fragments")
            wanted = 1 + 2 * count
        tokens = b"".join(blocks).split(b"\n", wanted)[1:wanted]
        return [_sparse_number(token, offset) for token in tokens], stored

    def _set_sparse(self, numbers: list[int], realsize: int, stored: int, offset: int) -> None:
        """Check a map (offset, length, ...: the callers give pairs) and make it the
        current body's."""
        fragments = list(zip(numbers[0::2], numbers[1::2]))
        end = data = 0
        for start, length in fragments:
            if start < end or length < 0:
                raise _bad_sparse(offset, "fragments overlap or are out of order")
            end = start + length
            data += length
        if end > realsize:
            raise _bad_sparse(offset, f"a fragment ends at {end}, past the real size {realsize}")
        if data != stored:
            raise _bad_sparse(offset, f"the fragments hold {data} bytes, the entry {stored}")
        self._sparse = fragments
        self._remaining = stored

    # -- bodies ---------------------------------------------------------------------------

    def body(self) -> Iterator[memoryview]:
        """The current entry's data as views of the chunks read (or of zeros for a sparse
        file's holes); it may be left unfinished (the next :meth:`next` skips the rest),
        and calling it again continues where it stopped."""
        if self._body is None:
            if self._sparse is None:
                self._body = self._stored(self._remaining, self._generation)
            else:
                self._body = self._expanded(self._sparse, self._size, self._generation)
        return self._body

    def _stored(self, n: int, generation: int) -> Iterator[memoryview]:
        """``n`` bytes of the body as stored, from the chunks."""
        while n:
            if self._generation != generation:
                return  # next() moved on
            pos = self._pos
            left = len(self._buf) - pos
            if not left:
                if not self._fill():
                    self._error = _truncated(self._entry)
                    raise self._error
                continue
            take = n if n < left else left
            self._pos = pos + take
            self._remaining -= take
            n -= take
            yield self._view[pos:pos + take]

    def _expanded(self, fragments: list[tuple[int, int]], size: int,
                  generation: int) -> Iterator[memoryview]:
        """A sparse file's body: its fragments with zeros between them."""
        position = 0
        zeros = memoryview(_ZEROS)
        for start, length in fragments + [(size, 0)]:
            while position < start:
                if self._generation != generation:
                    return
                take = min(start - position, ZERO_PIECE_SIZE)
                position += take
                yield zeros[:take]
            if length:
                yield from self._stored(length, generation)
                position += length

    def drain(self) -> None:
        """Read the source to its end, ignoring what is left (end-of-archive blocks,
        padding, anything after them)."""
        self._generation += 1
        self._body = None
        self._remaining = self._pad = 0
        self._pos = len(self._buf)
        while self._fill():
            self._pos = len(self._buf)


# -- numbers and records -------------------------------------------------------------------


def _truncated(offset: int) -> InvalidTar:
    return InvalidTar(f"tar stream ends inside the entry at offset {offset} (truncated)", offset)


def _damaged(offset: int, what: str) -> InvalidTar:
    return InvalidTar(f"damaged tar header at offset {offset}: {what}", offset)


def _bad_sparse(offset: int, what: str) -> InvalidTar:
    return InvalidTar(f"invalid sparse map in the entry at offset {offset}: {what}", offset)


def _number(field: bytes, what: str, offset: int) -> int:
    """A numeric header field: octal, or GNU base-256 (two's complement)."""
    first = field[0]
    if first & 0x80:
        bits = 8 * len(field) - 1
        value = int.from_bytes(field, "big") & ((1 << bits) - 1)
        if first & 0x40:
            value -= 1 << bits
        if not -_INT64_MAX - 1 <= value <= _INT64_MAX:
            raise _damaged(offset, f"{what} field out of range")
        return value
    digits = field.split(b"\0", 1)[0].strip(b" ")
    if not digits:
        return 0
    if digits.translate(None, _OCTAL_DIGITS):
        raise _damaged(offset, f"invalid {what} field {field!r}")
    return int(digits, 8)  # at most 12 digits: far below 2**63


def _check_signed_sum(block: bytes, stored: int, offset: int) -> None:
    """Accept a header whose checksum is the sum of its bytes as signed chars (old tars);
    raise otherwise. ``stored`` already failed as the unsigned sum."""
    rest = block[:148] + block[156:]
    unsigned = sum(rest) + 256
    high = len(rest) - len(rest.translate(None, _HIGH_BYTES))
    if stored != unsigned and stored != unsigned - 256 * high:
        raise _damaged(offset, "checksum mismatch")


def _parse_header(block: bytes, offset: int) -> tuple:
    """Any header the fast expression does not take: numbers in other widths, spaces,
    base-256; checks the checksum and that the size is not negative (ids may be: the
    unpacker judges their range, naming the entry)."""
    _check_signed_sum(block, _number(block[148:156], "checksum", offset), offset)
    mode = _number(block[100:108], "mode", offset)
    uid = _number(block[108:116], "uid", offset)
    gid = _number(block[116:124], "gid", offset)
    size = _number(block[124:136], "size", offset)
    mtime = _number(block[136:148], "mtime", offset)
    if size < 0:
        raise _damaged(offset, "negative size")
    name = block[:100].split(b"\0", 1)[0]
    link = block[157:257].split(b"\0", 1)[0]
    prefix = block[345:500].split(b"\0", 1)[0]
    return name, mode, uid, gid, size, mtime, link, block[257:265], prefix


def _parse_pax(data: bytes, records: dict[bytes, bytes], pairs: list[int] | None,
               offset: int) -> list[int] | None:
    """Add the records of a PAX header body to ``records``; PAX 0.0 sparse offsets and
    lengths go, in order, to ``pairs`` (returned)."""
    pos = 0
    end_of_data = len(data)
    while pos < end_of_data:
        if data[pos] == 0:  # NUL padding after the records (tarfile stops there too)
            if data.count(b"\0", pos) != end_of_data - pos:
                raise _bad_pax(offset, "bytes after a NUL")
            break
        space = data.find(b" ", pos, pos + 21)
        digits = data[pos:space]
        if space < 0 or not digits.isdigit():
            raise _bad_pax(offset, "no length")
        end = pos + int(digits)
        if end - pos < 5 or end > end_of_data or data[end - 1] != 10:
            raise _bad_pax(offset, f"length {int(digits)} does not match the record")
        equals = data.find(b"=", space + 1, end - 1)
        if equals <= space + 1:
            raise _bad_pax(offset, "no keyword")
        key = data[space + 1:equals]
        if key == b"GNU.sparse.offset" or key == b"GNU.sparse.numbytes":
            if pairs is None:
                pairs = []
            if (key == b"GNU.sparse.offset") != (len(pairs) % 2 == 0):
                raise _bad_pax(offset, "GNU.sparse.offset and GNU.sparse.numbytes out of order")
            pairs.append(_sparse_number(data[equals + 1:end - 1], offset))
        else:
            records[key] = data[equals + 1:end - 1]
        pos = end
    return pairs


def _bad_pax(offset: int, what: str) -> InvalidTar:
    return InvalidTar(f"invalid PAX record at offset {offset}: {what}", offset)


def _pax_number(value: bytes, key: bytes, offset: int, signed: bool = False) -> int:
    """A decimal PAX number in 64 bits; negative only if ``signed`` (ids, as Go reads
    them: the unpacker judges their range, naming the entry)."""
    digits = value[1:] if signed and value[:1] == b"-" else value
    if digits.isdigit() and len(digits) <= 64:
        number = int(value)
        if -_INT64_MAX - 1 <= number <= _INT64_MAX:
            return number
    raise _bad_pax(offset, f"{key.decode()}={value[:40]!r} is not a number")


def _pax_time(value: bytes, offset: int) -> int:
    """A PAX time in nanoseconds, exact: seconds, optionally a fraction (more than nine
    digits are cut, as Go does), optionally negative."""
    match = _PAX_TIME.fullmatch(value)
    if match is None:
        raise _bad_pax(offset, f"invalid modification time {value[:40]!r}")
    sign, seconds, fraction = match.groups()
    if len(seconds) > 30:
        raise _bad_pax(offset, "modification time out of range")
    ns = int(seconds) * _NS + int((fraction or b"")[:9].ljust(9, b"0"))
    return -ns if sign else ns


def _sparse_number(value: bytes, offset: int) -> int:
    if value.isdigit() and len(value) <= 64:
        number = int(value)
        if number <= _INT64_MAX:
            return number
    raise _bad_sparse(offset, f"{value[:40]!r} is not a number")


def _old_gnu_map(area: bytes, numbers: list[int], offset: int) -> None:
    """The (offset, length) pairs of an old GNU sparse area, 24 bytes each, until one
    whose offset starts with NUL (GNU's and BSD tar's rule)."""
    for at in range(0, len(area) - 23, 24):
        if area[at] == 0:
            break
        numbers.append(_number(area[at:at + 12], "sparse offset", offset))
        numbers.append(_number(area[at + 12:at + 24], "sparse length", offset))
