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


def test_parallel_download_settings(tmp_path):
    defaults = config.load(write(tmp_path, ""))
    assert (defaults.max_connections_per_download, defaults.parallel_download_threshold,
            defaults.parallel_download_chunk_size) == (4, 64 << 20, 16 << 20)
    cfg = config.load(write(tmp_path, "max_connections_per_download = 1\n"
                                      "parallel_download_threshold = 1048576\n"
                                      "parallel_download_chunk_size = 262144\n"))
    assert (cfg.max_connections_per_download, cfg.parallel_download_threshold,
            cfg.parallel_download_chunk_size) == (1, 1 << 20, 256 << 10)
