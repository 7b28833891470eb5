import pytest
from tools import require

from contentstore import Store
from contentstore.plugin import manager as pluginmanager

pytest_plugins = ["contentstore.testing", "servers"]


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path / "store")


@pytest.fixture
def plugins():
    return pluginmanager.create()


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path, monkeypatch):
    """No test reads the user's Docker credentials or contentstore config."""
    docker_config = tmp_path / "docker-config"
    docker_config.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(docker_config))
    config = tmp_path / "contentstore-config.toml"
    config.write_text("")
    monkeypatch.setenv("CONTENTSTORE_CONFIG", str(config))
    monkeypatch.delenv("CONTENTSTORE_ROOT", raising=False)
    monkeypatch.delenv("CONTENTSTORE_DISABLE_PLUGINS", raising=False)


def pytest_configure(config):
    config.addinivalue_line("markers", "needs(*tools): the real programs a test runs (skopeo, umoci, "
                            "docker-registry); missing ones fail the test on CI and skip it elsewhere")


@pytest.fixture(autouse=True)
def needed_tools(request):
    """Check the programs named by ``pytest.mark.needs`` before the test starts."""
    for marker in request.node.iter_markers("needs"):
        for tool in marker.args:
            require(tool)
