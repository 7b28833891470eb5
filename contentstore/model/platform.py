"""Platforms (``os/architecture[/variant]``), normalized as containerd's ``platforms`` does."""

from __future__ import annotations

import platform as _host
import sys
from dataclasses import dataclass, field

from contentstore.errors import InvalidPlatform

_OS_ALIASES = {"macos": "darwin"}

# architecture -> (normalized architecture, default variant)
_ARCH_ALIASES = {
    "i386": ("386", None),
    "i686": ("386", None),
    "x86_64": ("amd64", None),
    "x86-64": ("amd64", None),
    "aarch64": ("arm64", None),
    "armhf": ("arm", "v7"),
    "armel": ("arm", "v6"),
}


def _normalize_arch(arch: str, variant: str | None) -> tuple[str, str | None]:
    arch = arch.lower()
    variant = variant.lower() if variant else None
    arch, default_variant = _ARCH_ALIASES.get(arch, (arch, None))
    if arch == "arm":
        variant = {None: "v7", "7": "v7", "6": "v6", "5": "v5", "8": "v8"}.get(variant, variant)
    elif arch == "arm64":
        # arm64 without a variant is arm64/v8: the two are the same platform.
        variant = {None: "v8", "8": "v8"}.get(variant, variant)
    elif arch == "amd64":
        variant = None if variant == "v1" else variant
    if variant is None:
        variant = default_variant
    return arch, variant


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
        machine = _host.machine() or "amd64"
        variant = None
        if machine.startswith("armv"):
            variant, machine = machine[3:5], "arm"
            variant = f"v{variant[-1]}" if variant[-1].isdigit() else None
        return cls.normalized(os_name, machine, variant)

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
