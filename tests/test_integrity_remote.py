"""Issue 12, remote side: what a registry sends is bounded (size, time, rate), credentials
stay with their host, and the model's promises (platform matching, reference grammar)
are containerd's and distribution's. Every test talks to a real registry, a real token
server or the fault proxy playing a lying registry."""

import os
import subprocess
import sys

import pytest
from servers import oci_ref, upload

from contentstore.testing import build_image, build_index, push

pytestmark = pytest.mark.needs("skopeo", "docker-registry")


def cli(*args, root, config=None, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    command = [sys.executable, "-m", "contentstore", "--root", str(root)]
    if config is not None:
        command += ["--config", str(config)]
    return subprocess.run([*command, *args], capture_output=True, text=True, env=env, timeout=300)


# -- platforms ---------------------------------------------------------------------------------


def test_arm64_v9_and_armel_hosts_pull_what_containerd_would(registry, source, tmp_path):
    """An index without an arm64/v9 image serves an arm64/v9 host its arm64/v8 image;
    ``armel`` is arm/v6, so it gets the v6 image, not the v7 one it cannot run."""
    build_index(source, "src/plat:latest", [("linux", "amd64", None), ("linux", "arm64", "v8"),
                                            ("linux", "arm", "v7"), ("linux", "arm", "v6")])
    ref = push(oci_ref(source, "docker.io/src/plat:latest"), registry, "team/plat:1", "--all")
    for wanted, expected in (("linux/arm64/v9", "linux/arm64/v8"), ("linux/arm64/v9.0", "linux/arm64/v8"),
                             ("linux/armel", "linux/arm/v6"), ("linux/armhf", "linux/arm/v7")):
        root = tmp_path / wanted.replace("/", "-")
        proc = cli("pull", "--platform", wanted, ref, root=root)
        assert proc.returncode == 0, proc.stderr
        proc = cli("images", "--format", "json", root=root)
        assert f'"platform": "{expected}"' in proc.stdout, (wanted, proc.stdout)


# -- references --------------------------------------------------------------------------------


def test_repository_of_255_characters_on_a_registry_pulls(registry, source, store):
    """The 255-character limit is on the repository path: with its domain, this
    reference is longer than 255 characters, and the registry serves it."""
    descriptor = build_image(source, "src/long", {"long.txt": "long\n"})
    blobs = [source.content.read(d.digest) for d in source.image("src/long").layers]
    blobs.append(source.content.read(source.image("src/long").config.digest))
    repository = "team/" + "r" * 250
    upload(registry.url, repository, blobs, source.content.read(descriptor.digest), descriptor.media_type, "1")
    ref = f"{registry.host}/{repository}:1"
    assert len(ref) > 255
    assert store.pull(ref).digest == descriptor.digest


# -- mirror URLs -------------------------------------------------------------------------------


def test_mirror_url_with_a_password_is_refused_without_printing_it(registry, source, tmp_path):
    """A mirror URL may not carry user:password@ (it would show in "Pulled from mirror …"
    and in every error naming the endpoint): a one-line error that names the file and
    line and never the password, also with -v, also for a URL the grammar refuses."""
    build_image(source, "src/m", {"m.txt": "m\n"})
    ref = push(oci_ref(source, "docker.io/src/m:latest"), registry, "team/mirrored:1")
    secret = "s3cret-Mirror-pw"
    for url in (f"http://alice:{secret}@{registry.host}", f"https://alice:{secret}@{registry.host}/v2/x"):
        config = tmp_path / "config.toml"
        config.write_text(f'[registry."{registry.host}"]\nmirrors = ["{url}"]\n')
        for verbose in ((), ("-v",)):
            proc = cli(*verbose, "pull", ref, root=tmp_path / "store", config=config)
            assert proc.returncode == 1
            assert secret not in proc.stdout + proc.stderr
            assert f"{config}:2: mirror 'http" in proc.stderr and "***@" in proc.stderr
            if not verbose:
                assert proc.stderr.startswith("contentstore: error: ") and proc.stderr.count("\n") == 1
    # the same rule for a configuration made in Python
    from contentstore.config import RegistryConfig
    from contentstore.errors import ConfigError
    with pytest.raises(ConfigError) as info:
        RegistryConfig(mirrors=(f"https://bob:{secret}@mirror.example.com",))
    assert secret not in str(info.value)
