"""Content digests (``algorithm:hex``), validated strictly.

Only the algorithms the OCI image spec registers are accepted, with lower-case hex of
exactly the algorithm's length, so a valid digest can always be used as a file name
inside ``blobs/<algorithm>/`` and can never name a path outside it.
"""

from __future__ import annotations

import hashlib
import re
from typing import BinaryIO

from contentstore.errors import InvalidDigest
from contentstore.model.limits import CHUNK_SIZE

#: algorithm -> length of its hex encoding
ALGORITHMS = {"sha256": 64, "sha512": 128}
CANONICAL = "sha256"

_HEX = re.compile(r"[0-9a-f]+")


class Digest(str):
    """A validated digest string such as ``sha256:e3b0…``; behaves as a plain ``str``."""

    __slots__ = ()

    def __new__(cls, value: str) -> "Digest":
        if isinstance(value, Digest):
            return value
        if not isinstance(value, str):
            raise InvalidDigest(f"invalid digest {value!r}: not a string")
        algorithm, sep, encoded = value.partition(":")
        if not sep:
            raise InvalidDigest(f"invalid digest {value!r}: expected ALGORITHM:HEX")
        length = ALGORITHMS.get(algorithm)
        if length is None:
            raise InvalidDigest(
                f"invalid digest {value!r}: unsupported algorithm {algorithm!r} "
                f"(supported: {', '.join(ALGORITHMS)})"
            )
        if len(encoded) != length or not _HEX.fullmatch(encoded):
            raise InvalidDigest(
                f"invalid digest {value!r}: {algorithm} needs {length} lower-case hex characters"
            )
        return super().__new__(cls, value)

    @property
    def algorithm(self) -> str:
        return self.partition(":")[0]

    @property
    def hex(self) -> str:
        return self.partition(":")[2]

    def short(self, length: int = 12) -> str:
        return self.hex[:length]

    def hasher(self) -> "hashlib._Hash":
        return hashlib.new(self.algorithm)


def parse(value: str) -> Digest:
    """Return ``value`` as a :class:`Digest`, or raise :class:`InvalidDigest`."""
    return Digest(value)


def is_valid(value: str) -> bool:
    try:
        Digest(value)
    except InvalidDigest:
        return False
    return True


def new_hasher(algorithm: str = CANONICAL) -> "hashlib._Hash":
    if algorithm not in ALGORITHMS:
        raise InvalidDigest(f"unsupported digest algorithm {algorithm!r}")
    return hashlib.new(algorithm)


def from_hasher(hasher: "hashlib._Hash") -> Digest:
    return Digest(f"{hasher.name}:{hasher.hexdigest()}")


def of_bytes(data: bytes, algorithm: str = CANONICAL) -> Digest:
    hasher = new_hasher(algorithm)
    hasher.update(data)
    return from_hasher(hasher)


def of_file(fileobj: BinaryIO, algorithm: str = CANONICAL) -> tuple[Digest, int]:
    """Hash a file object from its current position to its end; return digest and size."""
    hasher = new_hasher(algorithm)
    size = 0
    buffer = bytearray(CHUNK_SIZE)
    view = memoryview(buffer)
    while n := fileobj.readinto(buffer):
        hasher.update(view[:n])
        size += n
    return from_hasher(hasher), size
