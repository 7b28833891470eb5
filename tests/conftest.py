import pytest
from tools import require

from contentstore import Store
from contentstore.plugin import manager as pluginmanager

pytest_plugins = ["contentstore.testing", "servers", "pki"]


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path / "store")


@pytest.fixture
def plugins():
    return pluginmanager.create()


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path, monkeypatch):
    """No test reads the user's Docker credentials, contentstore config or certs.d, nor
    goes through a proxy or a CA bundle of the environment it runs in."""
    docker_config = tmp_path / "docker-config"
    docker_config.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(docker_config))
    config = tmp_path / "contentstore-config.toml"
    config.write_text("")
    monkeypatch.setenv("CONTENTSTORE_CONFIG", str(config))
    monkeypatch.delenv("CONTENTSTORE_ROOT", raising=False)
    monkeypatch.delenv("CONTENTSTORE_DISABLE_PLUGINS", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
                 "SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def pytest_configure(config):
    config.addinivalue_line("markers", "needs(*tools): the real programs a test runs (skopeo, umoci, "
                            "docker-registry); missing ones fail the test on CI and skip it elsewhere")


@pytest.fixture(autouse=True)
def needed_tools(request):
    """Check the programs named by ``pytest.mark.needs`` before the test starts."""
    for marker in request.node.iter_markers("needs"):
        for tool in marker.args:
            require(tool)
