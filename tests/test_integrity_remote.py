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
