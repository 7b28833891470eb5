"""Platforms (``os/architecture[/variant]``), normalized as containerd's ``platforms`` does."""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field

from contentstore.errors import InvalidPlatform

_OS_ALIASES = {"macos": "darwin"}

_ARCH_ALIASES = {"i386": "386", "i686": "386", "x86_64": "amd64", "x86-64": "amd64",
                 "aarch64": "arm64", "armhf": "arm", "armel": "arm"}
# Aliases that also fix the variant, whatever variant is given (containerd's
# normalizeArch): ``armel`` is always arm/v6, ``armhf`` arm/v7.
_ALIAS_VARIANTS = {"i386": None, "i686": None, "armhf": "v7", "armel": "v6"}
# (architecture, variant as written) -> normalized variant, as containerd's normalizeArch;
# arm64 keeps ``v8`` where containerd writes "" (the same platform).
_VARIANTS = {
    ("amd64", "v1"): None,
    ("arm", None): "v7", ("arm", "7"): "v7", ("arm", "5"): "v5", ("arm", "6"): "v6", ("arm", "8"): "v8",
    ("arm64", None): "v8", ("arm64", "8"): "v8", ("arm64", "v8.0"): "v8",
    ("arm64", "9"): "v9", ("arm64", "9.0"): "v9", ("arm64", "v9.0"): "v9",
}


def _normalize_arch(arch: str, variant: str | None) -> tuple[str, str | None]:
    arch = arch.lower()
    variant = variant.lower() if variant else None
    if arch in _ALIAS_VARIANTS:
        variant = _ALIAS_VARIANTS[arch]
    arch = _ARCH_ALIASES.get(arch, arch)
    return arch, _VARIANTS.get((arch, variant), variant)


@dataclass(frozen=True)
class Platform:
    """A normalized platform. ``arm64`` always carries variant ``v8``, ``arm`` a variant."""

    os: str
    architecture: str
    variant: str | None = None
    os_version: str | None = field(default=None, compare=False)
    os_features: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def normalized(cls, os: str, architecture: str, variant: str | None = None,
                   os_version: str | None = None, os_features=()) -> "Platform":
        os_name = _OS_ALIASES.get(os.lower(), os.lower())
        arch, variant = _normalize_arch(architecture, variant)
        return cls(os_name, arch, variant, os_version, tuple(os_features or ()))

    @classmethod
    def parse(cls, text: str) -> "Platform":
        """Parse ``os/arch[/variant]`` (``linux/arm64/v8``, ``linux/amd64``)."""
        parts = text.split("/") if text else []
        if not 2 <= len(parts) <= 3 or not all(parts):
            raise InvalidPlatform(f"invalid platform {text!r}: expected OS/ARCH[/VARIANT]")
        return cls.normalized(*parts)

    @classmethod
    def from_json(cls, data: dict) -> "Platform":
        return cls.normalized(
            data.get("os", ""), data.get("architecture", ""), data.get("variant"),
            data.get("os.version"), data.get("os.features") or (),
        )

    @classmethod
    def host(cls) -> "Platform":
        """The platform this process runs on (Linux containers for a macOS host too)."""
        os_name = "linux" if sys.platform.startswith(("linux", "darwin")) else sys.platform
        return cls.normalized(os_name, *_machine_platform(_machine()))

    def to_json(self) -> dict:
        data = {"architecture": self.architecture, "os": self.os}
        if self.os_version:
            data["os.version"] = self.os_version
        if self.os_features:
            data["os.features"] = list(self.os_features)
        if self.variant:
            data["variant"] = self.variant
        return data

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def _machine() -> str:
    """``platform.machine()``: ``uname``'s machine where there is one (what ``platform``
    answers there too, without the millisecond its import costs)."""
    if hasattr(os, "uname"):
        return os.uname().machine
    import platform

    return platform.machine()


def _machine_platform(machine: str) -> tuple[str, str | None]:
    """``uname -m`` -> (architecture, variant): ``armv6l`` is arm/v6, ``armv5tel``
    arm/v5, ``armv8l`` (32-bit on a 64-bit CPU) arm/v8, as containerd's cpuinfo reads them."""
    match = re.fullmatch(r"armv(\d+)\D*", machine.lower())
    if match:
        return "arm", f"v{match.group(1)}"
    return machine or "amd64", None
