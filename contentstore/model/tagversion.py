"""Tags read as versions, for ``sync --latest N``: which tags are the newest.

A tag is a version when it is ``[v]MAJOR[.MINOR[.PATCH[.MORE]]][-PRERELEASE]`` with
numbers for the first part (``1``, ``v1.2``, ``3.19.1``, ``1.0.0-rc.1``, ``1.25-alpine``,
``20240101``). Versions are ordered as semantic versions: numerically, missing parts
counting as 0 (``1.2`` = ``1.2.0``), a pre-release before its release (``1.0.0-rc.1`` <
``1.0.0``), pre-release identifiers compared as SemVer 2.0 says (numbers numerically and
below words, words in ASCII order, more identifiers after fewer). Tags of equal
precedence (``1.2``, ``1.2.0``, ``v1.2``) are ordered by their text, so the choice is the
same on every run. Tags that are no versions (``latest``, ``stable``, a commit hash) have
no place in that order.
"""

from __future__ import annotations

import re
from functools import total_ordering

_VERSION = re.compile(r"[vV]?(?P<core>\d+(?:\.\d+){0,3})(?:-(?P<pre>[0-9A-Za-z.-]+))?")


@total_ordering
class TagVersion:
    """A tag read as a version; ordered by semantic-version precedence, then by text."""

    __slots__ = ("tag", "core", "pre")

    def __init__(self, tag: str, core: tuple[int, ...], pre: tuple):
        self.tag = tag
        self.core = core
        self.pre = pre

    @classmethod
    def parse(cls, tag: str) -> "TagVersion | None":
        """The version ``tag`` states, or ``None`` when it states none."""
        match = _VERSION.fullmatch(tag)
        if not match:
            return None
        core = tuple(int(part) for part in match["core"].split("."))
        core = core + (0,) * (4 - len(core))
        pre: tuple = ()
        if match["pre"]:
            identifiers = match["pre"].split(".")
            if any(not identifier for identifier in identifiers):
                return None  # "1.0-" or "1.0-a..b"
            pre = tuple((0, int(i), "") if i.isdigit() else (1, 0, i) for i in identifiers)
        return cls(tag, core, pre)

    def _key(self) -> tuple:
        # A release (no pre-release) ranks above every pre-release of the same core.
        return (self.core, (1,) if not self.pre else (0, self.pre), self.tag)

    def __eq__(self, other) -> bool:
        return isinstance(other, TagVersion) and self._key() == other._key()

    def __lt__(self, other: "TagVersion") -> bool:
        return self._key() < other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"TagVersion({self.tag!r})"


def is_version(tag: str) -> bool:
    return TagVersion.parse(tag) is not None


def latest(tags: list[str], count: int) -> list[str]:
    """The ``count`` highest versions among ``tags``, highest first; tags that are no
    versions are left out."""
    if count < 0:
        raise ValueError("count must not be negative")
    versions = [v for v in (TagVersion.parse(tag) for tag in tags) if v is not None]
    return [v.tag for v in sorted(versions, reverse=True)[:count]]
