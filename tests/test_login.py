"""login / logout against real registries, with Docker's config.json and helpers."""

import base64
import json
import os
import stat
import subprocess
import sys

import pytest
from servers import PASSWORD, USER, oci_ref

from contentstore.testing import build_image, push

pytestmark = pytest.mark.needs("skopeo", "docker-registry")


def cli(root, *args, stdin=None, env=None):
    return subprocess.run([sys.executable, "-m", "contentstore", "--root", str(root), *args],
                          input=stdin, capture_output=True, text=True, env={**os.environ, **(env or {})})


@pytest.mark.parametrize("kind", ["htpasswd", "token"])
def test_login_pull_logout(kind, request, source, tmp_path):
    reg = request.getfixturevalue("htpasswd_registry") if kind == "htpasswd" else \
        request.getfixturevalue("token_registry").registry
    build_image(source, "src/login", {"f": "login\n"})
    ref = push(oci_ref(source, "docker.io/src/login:latest"), reg, "team/login:1", credentials=(USER, PASSWORD))
    root = tmp_path / "store"
    config_path = tmp_path / "docker-config" / "config.json"

    bad = cli(root, "login", reg.host, "-u", USER, "--password-stdin", stdin="wrong\n")
    assert bad.returncode == 1 and bad.stderr.startswith("contentstore: error: unauthorized")
    assert bad.stderr.count("\n") == 1 and not config_path.exists()

    good = cli(root, "login", reg.host, "-u", USER, "--password-stdin", stdin=PASSWORD + "\n")
    assert good.returncode == 0, good.stderr
    assert good.stdout.splitlines()[-1] == "Login Succeeded"
    saved = json.loads(config_path.read_text())
    assert base64.b64decode(saved["auths"][reg.host]["auth"]).decode() == f"{USER}:{PASSWORD}"
    assert stat.S_IMODE(config_path.stat().st_mode) == 0o600

    assert cli(root, "pull", ref).returncode == 0

    out = cli(root, "logout", reg.host)
    assert out.stdout == f"Removing login credentials for {reg.host}\n"
    assert reg.host not in json.loads(config_path.read_text()).get("auths", {})
    assert cli(root, "logout", reg.host).stdout == f"Not logged in to {reg.host}\n"


HELPER = """#!/usr/bin/env python3
import json, os, sys
path = os.environ["FAKE_HELPER_FILE"]
data = json.load(open(path)) if os.path.exists(path) else {}
action = sys.argv[1]
if action == "store":
    entry = json.load(sys.stdin)
    data[entry["ServerURL"]] = [entry["Username"], entry["Secret"]]
elif action == "get":
    server = sys.stdin.read().strip()
    if server not in data:
        print("credentials not found in native keychain"); sys.exit(1)
    print(json.dumps({"ServerURL": server, "Username": data[server][0], "Secret": data[server][1]}))
elif action == "erase":
    server = sys.stdin.read().strip()
    if server not in data:
        print("credentials not found in native keychain"); sys.exit(1)
    del data[server]
json.dump(data, open(path, "w"))
"""


def test_login_through_creds_store(htpasswd_registry, source, tmp_path):
    build_image(source, "src/helper", {"f": "helper\n"})
    ref = push(oci_ref(source, "docker.io/src/helper:latest"), htpasswd_registry, "team/helper:1",
               credentials=(USER, PASSWORD))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-testfile"
    helper.write_text(HELPER)
    helper.chmod(0o755)
    store_file = tmp_path / "helper-store.json"
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_HELPER_FILE": str(store_file)}
    config_path = tmp_path / "docker-config" / "config.json"
    config_path.write_text(json.dumps({"credsStore": "testfile"}))
    root = tmp_path / "store"
    good = cli(root, "login", htpasswd_registry.host, "-u", USER, "--password-stdin", stdin=PASSWORD, env=env)
    assert good.returncode == 0, good.stderr
    assert json.loads(store_file.read_text()) == {htpasswd_registry.host: [USER, PASSWORD]}
    assert "auths" not in json.loads(config_path.read_text())  # the secret is not in the file
    assert cli(root, "pull", ref, env=env).returncode == 0
    assert cli(root, "logout", htpasswd_registry.host, env=env).returncode == 0
    assert json.loads(store_file.read_text()) == {}


def test_login_usage_errors(tmp_path):
    proc = cli(tmp_path / "s", "login", "127.0.0.1:1", "--password-stdin", stdin="x")
    assert proc.returncode == 2
    proc = cli(tmp_path / "s", "login", "not a host", "-u", "a", "--password-stdin", stdin="x")
    assert proc.returncode == 1 and "invalid registry name" in proc.stderr
