import shutil

import pytest

from contentstore import Store
from contentstore import pluginmanager


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path / "store")


@pytest.fixture
def plugins():
    return pluginmanager.create()


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        if __import__("os").environ.get("CI"):
            pytest.fail(f"{tool} is not installed; .ci/run installs it")
        pytest.skip(f"{tool} is not installed")
    return path
