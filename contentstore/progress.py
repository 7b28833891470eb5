"""Progress of pulls and pushes: events, and the ways the CLI shows them.

A pull reports :class:`ProgressEvent` objects to a callback: message lines (``id`` is
``None``) and per-layer states, as Docker prints them (``Pulling fs layer``, ``Waiting``,
``Downloading``, ``Verifying Checksum``, ``Download complete``, ``Pull complete``,
``Already exists``). On a terminal the CLI redraws one line per layer with a bar; in a
pipe or a log it prints each state once; for machines (``--progress json``) it writes
each event as one JSON object a line, on stderr. Each of these outputs is a callback a
Python caller can hand to ``Store.pull(progress=…)`` as well.
"""

from __future__ import annotations

import json
import sys
import threading
from dataclasses import dataclass
from typing import Callable, TextIO


@dataclass(frozen=True)
class ProgressEvent:
    id: str | None
    status: str
    current: int | None = None
    total: int | None = None


ProgressCallback = Callable[[ProgressEvent], None]


def human_size(size: float) -> str:
    """Sizes as Docker prints them (SI units)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.3g}{unit}"
        size /= 1000
    return f"{size}B"


def bar(current: int, total: int | None, width: int = 50) -> str:
    """Docker's progress bar: ``[=====>     ] 1.2MB/3.4MB``."""
    if not total:
        return human_size(current)
    filled = min(width, int(100 * current / total) * width // 100)
    return f"[{'=' * filled}>{' ' * (width - filled)}] {human_size(current)}/{human_size(total)}"


class PlainOutput:
    """One line per state change; download progress is not repeated."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stdout
        self._last: dict[str, str] = {}
        self._lock = threading.Lock()

    def __call__(self, event: ProgressEvent) -> None:
        with self._lock:
            if event.id is None:
                print(event.status, file=self.stream, flush=True)
                return
            if self._last.get(event.id) == event.status:
                return
            self._last[event.id] = event.status
            print(f"{event.id}: {event.status}", file=self.stream, flush=True)


class TerminalOutput:
    """Docker's live display: a line per layer, redrawn in place with a progress bar."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stdout
        self._lines: list[str] = []  # layer ids, in the order they appeared
        self._lock = threading.Lock()

    def __call__(self, event: ProgressEvent) -> None:
        with self._lock:
            if event.id is None:
                self._lines.clear()  # messages end the block of layer lines
                print(event.status, file=self.stream, flush=True)
                return
            text = f"{event.id}: {event.status}"
            if event.current is not None and event.status in ("Downloading", "Pushing"):
                text += " " + bar(event.current, event.total)
            if event.id not in self._lines:
                self._lines.append(event.id)
                self.stream.write(text + "\n")
            else:
                up = len(self._lines) - self._lines.index(event.id)
                self.stream.write(f"\x1b[{up}A\r\x1b[2K{text}\x1b[{up}B\r")
            self.stream.flush()


class JsonOutput:
    """One JSON object a line for each event, for CI logs and machines (skopeo#658):
    ``{"id": "1a2b3c4d5e6f", "status": "Downloading", "current": 1048576, "total":
    3145728}``; a message has ``"id": null`` and no sizes (``null``). The command line
    ends with a result object: ``{"result": "success", "reference": …, "digest": …}``,
    or ``{"result": "error", "error": "…"}``.

    :param stream: where the objects go (default: stderr).
    :param messages: where message lines (``Digest: …``, ``Status: …``) are also printed
        as text, as the other outputs print them (the CLI: stdout), or ``None``.
    :ivar status: the last ``Status: …`` message, without its prefix (for the result).
    """

    def __init__(self, stream: TextIO | None = None, messages: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.messages = messages
        self.status: str | None = None
        self._lock = threading.Lock()

    def __call__(self, event: ProgressEvent) -> None:
        with self._lock:
            self._write({"id": event.id, "status": event.status, "current": event.current, "total": event.total})
            if event.id is None:
                if event.status.startswith("Status: "):
                    self.status = event.status[len("Status: "):]
                if self.messages is not None:
                    print(event.status, file=self.messages, flush=True)

    def result(self, **fields) -> None:
        """The final object of an operation that succeeded: ``fields`` (reference, digest
        …), and the last status message."""
        with self._lock:
            status = {"status": self.status} if self.status else {}
            self._write({"result": "success", **status, **fields})

    def error(self, message: str, **fields) -> None:
        """The final object of an operation that failed."""
        with self._lock:
            self._write({"result": "error", "error": message, **fields})

    def warning(self, message: str) -> None:
        with self._lock:
            self._write({"warning": message})

    def _write(self, obj: dict) -> None:
        self.stream.write(json.dumps(obj, separators=(", ", ": ")) + "\n")
        self.stream.flush()


def quiet(event: ProgressEvent) -> None:
    """Show nothing."""


def for_stream(stream: TextIO | None = None) -> ProgressCallback:
    stream = stream or sys.stdout
    return TerminalOutput(stream) if stream.isatty() else PlainOutput(stream)
