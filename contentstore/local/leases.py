"""Leases: how writers hold gc off while they put blobs and then name them.

A pull, an import or a tag holds a shared lease from its first blob to its last
reference; gc takes the same lock exclusively, so it never sweeps what a writer is about
to name. ``flock`` is dropped by the kernel when a holder dies.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

from contentstore.local.fsutil import FileLock


class Leases:
    def __init__(self, state_dir: Path):
        self._path = Path(state_dir) / "gc.lock"

    @contextlib.contextmanager
    def lease(self) -> Iterator[None]:
        """Hold off gc while a multi-step write (blobs, then a reference) is under way."""
        with FileLock(self._path, shared=True):
            yield

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Wait for every lease to end and keep new ones off (gc)."""
        with FileLock(self._path):
            yield
