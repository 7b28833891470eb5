import pytest

from contentstore import Store, pluginmanager


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path / "store")


@pytest.fixture
def plugins():
    return pluginmanager.create()
