import pytest

from contentstore import config
from contentstore.errors import ConfigError


def write(tmp_path, text):
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_config_file(tmp_path):
    cfg = config.load(write(tmp_path, '''
max_concurrent_downloads = 5
[registry."docker.io"]
mirrors = ["https://mirror.example.com/"]
[registry."registry.internal:5000"]
insecure = true
mirrors = ["http://127.0.0.1:5005"]
mirror_fallback = false
'''))
    assert cfg.max_concurrent_downloads == 5
    assert cfg.registry("docker.io").mirrors == ("https://mirror.example.com",)
    internal = cfg.registry("registry.internal:5000")
    assert internal.insecure and not internal.mirror_fallback and internal.mirrors == ("http://127.0.0.1:5005",)
    assert cfg.registry("other").mirrors == ()


@pytest.mark.parametrize("text, where", [
    ('[registry."x"]\ninsecure = true\nmirors = []\n', ":3: unknown key 'mirors'"),
    ('colour = "red"\n', ":1: unknown key 'colour'"),
    ('[registry."x"\n', "config.toml"),
    ('[registry."x"]\ninsecure = "yes"\n', ":2: 'insecure'"),
    ('[registry."x"]\nmirrors = ["ftp://a"]\n', ":2: mirror 'ftp://a'"),
    ('max_concurrent_downloads = 0\n', ":1:"),
    ('\n\n[pull]\n\nverify_diffid = true\n', ":5: unknown key 'verify_diffid'"),  # not the blank line
    ('\n[plugins]\nwasm = 3\n', ":3: plugins.wasm must be a table"),
    ('\nmax_connections_per_download = 0\n', ":2: 'max_connections_per_download' must be at least 1"),
    ('parallel_download_chunk_size = "16M"\n', ":1: 'parallel_download_chunk_size' must be a int"),
])
def test_bad_config_names_file_and_line(tmp_path, text, where):
    with pytest.raises(ConfigError) as info:
        config.load(write(tmp_path, text))
    assert where in str(info.value) and str(tmp_path) in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_files(tmp_path, monkeypatch):
    monkeypatch.delenv("CONTENTSTORE_CONFIG", raising=False)
    monkeypatch.setattr(config, "default_path", lambda: tmp_path / "absent.toml")
    assert config.load().registries == {}
    with pytest.raises(ConfigError):
        config.load(tmp_path / "absent.toml")


def test_plugin_settings_are_handed_over_unchecked(tmp_path):
    cfg = config.load(write(tmp_path, '''
max_concurrent_downloads = 2

[plugins.wasm]
max_module_size = 1048576
anything = { nested = ["is", "fine"] }

[plugins."site"]
allowed = ["127.0.0.1:5000/team"]
'''))
    assert cfg.plugin_settings("wasm") == {"max_module_size": 1048576, "anything": {"nested": ["is", "fine"]}}
    assert cfg.plugin_settings("site") == {"allowed": ["127.0.0.1:5000/team"]}
    assert cfg.plugin_settings("absent") == {}
    cfg.plugin_settings("site")["allowed"].append("mutated")  # a copy: other plugins see the file
    assert cfg.plugin_settings("site") == {"allowed": ["127.0.0.1:5000/team"]}
    path = tmp_path / "config.toml"
    assert cfg.where("wasm") == f"{path}:4"
    assert cfg.where("wasm", "anything") == f"{path}:6"
    assert cfg.where("site", "allowed") == f"{path}:9"
    assert cfg.where("site", "max_module_size") == f"{path}:8"  # not in that table: its header
    assert config.Config().plugin_settings("wasm") == {}


def test_tls_files_relative_to_the_config_file(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    cfg = config.load(write(tmp_path, '''
[registry."registry.internal:5000"]
ca_file = "certs/internal-ca.pem"
client_cert = "~/tls/client.cert"
client_key = "/etc/pki/client.key"
'''))
    internal = cfg.registry("registry.internal:5000")
    assert internal.ca_file == tmp_path / "certs" / "internal-ca.pem"
    assert internal.client_cert == tmp_path / "home" / "tls" / "client.cert"
    assert internal.client_key == config.Path("/etc/pki/client.key")
    assert cfg.registry("other").ca_file is None


@pytest.mark.parametrize("text, where", [
    ('[registry."a"]\ninsecure = true\n[registry."b"]\nclient_cert = "c.cert"\n',
     ":4: 'client_cert' in [registry.\"b\"] needs 'client_key' too"),
    ('[registry."a"]\nclient_key = "c.key"\n', ":2: 'client_key' in [registry.\"a\"] needs 'client_cert' too"),
    ('[registry."a"]\nca_file = 3\n', ":2: 'ca_file' in [registry.\"a\"] must be a string"),
    ('[registry."a"]\nca_file = ""\n', ":2: 'ca_file' in [registry.\"a\"] is empty"),
    ('[registry."a"]\nca_file = "x"\n[registry."b"]\ncafile = "x"\n', ":4: unknown key 'cafile'"),
])
def test_bad_tls_settings_name_file_and_line(tmp_path, text, where):
    with pytest.raises(ConfigError) as info:
        config.load(write(tmp_path, text))
    assert where in str(info.value) and str(tmp_path) in str(info.value)


def test_a_client_certificate_needs_its_key_in_python_too():
    with pytest.raises(ConfigError, match="needs 'client_key'"):
        config.RegistryConfig(client_cert=config.Path("c.cert"))


def test_parallel_download_settings(tmp_path):
    defaults = config.load(write(tmp_path, ""))
    assert (defaults.max_connections_per_download, defaults.parallel_download_threshold,
            defaults.parallel_download_chunk_size) == (4, 64 << 20, 16 << 20)
    cfg = config.load(write(tmp_path, "max_connections_per_download = 1\n"
                                      "parallel_download_threshold = 1048576\n"
                                      "parallel_download_chunk_size = 262144\n"))
    assert (cfg.max_connections_per_download, cfg.parallel_download_threshold,
            cfg.parallel_download_chunk_size) == (1, 1 << 20, 256 << 10)
