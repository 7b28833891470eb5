"""Helpers for tests that need real tools (skopeo, umoci, docker-registry)."""

import os
import shutil

import pytest


def require(tool: str) -> str:
    """The path of ``tool``; on CI a missing tool fails the test, elsewhere it skips."""
    path = shutil.which(tool)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{tool} is not installed; .ci/run installs it")
        pytest.skip(f"{tool} is not installed")
    return path
