import pytest

from contentstore import Store, pluginmanager

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
