"""The command line, run as users run it: a subprocess, output and exit status."""

import json
import os
import subprocess
import sys

import pytest

from contentstore.model import digest as digests
from contentstore.testing import build_image, build_index


@pytest.fixture
def cli(tmp_path):
    root = tmp_path / "store"
    (tmp_path / "none.toml").write_text("")
    env = {**os.environ, "CONTENTSTORE_ROOT": str(root), "CONTENTSTORE_CONFIG": str(tmp_path / "none.toml")}
    env.pop("CONTENTSTORE_DISABLE_PLUGINS", None)

    def run(*args, input=None, expect=0):
        proc = subprocess.run([sys.executable, "-m", "contentstore", *args], input=input,
                              capture_output=True, env=env)
        assert proc.returncode == expect, (proc.stdout, proc.stderr)
        return proc

    run.root = root
    return run


def test_blob_put_get_ls(cli, tmp_path):
    source = tmp_path / "file"
    source.write_bytes(b"some bytes\n")
    digest = cli("blob", "put", str(source)).stdout.decode().strip()
    assert digest == digests.of_bytes(b"some bytes\n")
    assert cli("blob", "put", "-", input=b"some bytes\n").stdout.decode().strip() == digest
    assert cli("blob", "get", digest).stdout == b"some bytes\n"
    out = tmp_path / "out"
    cli("blob", "get", digest, "-o", str(out))
    assert out.read_bytes() == b"some bytes\n"
    assert cli("blob", "ls").stdout.decode() == f"{digest}\t11\n"
    err = cli("blob", "put", "-", "--expected", digests.of_bytes(b"other"), input=b"x", expect=1).stderr.decode()
    assert err.startswith("contentstore: error: digest mismatch") and err.count("\n") == 1


def test_errors_are_one_line_and_usage_errors_exit_2(cli):
    err = cli("blob", "get", "sha256:../../etc/passwd", expect=1).stderr.decode()
    assert err == ("contentstore: error: invalid digest 'sha256:../../etc/passwd': "
                   "sha256 needs 64 lower-case hex characters\n")
    err = cli("blob", "get", "sha256:" + "0" * 64, expect=1).stderr.decode()
    assert err == f"contentstore: error: blob sha256:{'0' * 64} is not in the store\n"
    verbose = cli("-v", "blob", "get", "sha256:" + "0" * 64, expect=1).stderr.decode().splitlines()
    assert verbose[0] == "Traceback (most recent call last):"  # then the same line, last
    assert verbose[-1] == f"contentstore: error: blob sha256:{'0' * 64} is not in the store"
    cli("no-such-command", expect=2)
    cli("tag", "only-one", expect=2)
    cli("-p", "schema1", "plugins", expect=2)
    err = cli("inspect", "Not/Valid:ref:x", expect=1).stderr.decode()
    assert err.startswith("contentstore: error: invalid reference format") and err.count("\n") == 1


def test_images_inspect_tag_rmi(cli):
    from contentstore import Store
    store = Store(cli.root)
    desc = build_image(store, "127.0.0.1:5000/team/app:1.0")
    index = build_index(store, "example.com/multi:2", [("linux", "amd64", None), ("linux", "arm64", "v8")])

    table = cli("images").stdout.decode().splitlines()
    assert table[0].split() == ["REFERENCE", "DIGEST", "SIZE", "TYPE"]
    assert any(line.split()[:2] == ["127.0.0.1:5000/team/app:1.0", desc.digest] for line in table)
    listed = {i["reference"]: i for i in json.loads(cli("images", "--format", "json").stdout)}
    assert listed["127.0.0.1:5000/team/app:1.0"]["digest"] == desc.digest
    assert listed["127.0.0.1:5000/team/app:1.0"]["size"] == sum(
        store.size(d) for d in [desc.digest, store.image(desc.digest).config.digest,
                                *(l.digest for l in store.image(desc.digest).layers)])
    assert listed["example.com/multi:2"]["mediaType"] == "application/vnd.oci.image.index.v1+json"

    info = json.loads(cli("inspect", "127.0.0.1:5000/team/app:1.0").stdout)
    assert info["digest"] == desc.digest and info["platform"] == "linux/amd64"
    assert info["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    assert len(info["layers"]) == 1
    info = json.loads(cli("inspect", "example.com/multi:2", "--platform", "linux/arm64").stdout)
    assert info["digest"] == index.digest and info["platform"] == "linux/arm64/v8"
    assert {m["platform"]["architecture"] for m in info["manifests"]} == {"amd64", "arm64"}
    assert json.loads(cli("inspect", desc.digest).stdout)["digest"] == desc.digest
    err = cli("inspect", "example.com/multi:2", "--platform", "linux/s390x", expect=1).stderr.decode()
    assert "no matching manifest for linux/s390x" in err and "linux/amd64" in err

    cli("tag", "127.0.0.1:5000/team/app:1.0", "app:copy")
    assert "docker.io/library/app:copy" in cli("images").stdout.decode()
    cli("tag", desc.digest, "localhost:5000/by/digest")
    assert cli("rmi", "app:copy").stdout.decode() == "Untagged: app:copy\n"
    err = cli("rmi", "app:copy", expect=1).stderr.decode()
    assert err == "contentstore: error: no such image: docker.io/library/app:copy\n"
    cli("tag", "example.com/nope:1", "x", expect=1)
    cli("tag", desc.digest, f"x@{desc.digest}", expect=1)


def test_gc_and_verify(cli):
    from contentstore import Store
    store = Store(cli.root)
    build_image(store, "example.com/app:1")
    loose = store.put(b"loose" * 100)
    out = cli("gc", "--dry-run").stdout.decode()
    assert f"would delete: {loose.digest}" in out and "Reclaimable space: 500B" in out
    assert store.exists(loose.digest)
    out = cli("gc").stdout.decode()
    assert f"deleted: {loose.digest}" in out and "Total reclaimed space: 500B" in out
    assert not store.exists(loose.digest)
    assert "0 corrupt" in cli("verify").stdout.decode()

    image = store.image("example.com/app:1")
    path = store.content.path(image.config.digest)
    path.chmod(0o644)
    path.write_bytes(b"{}")
    err = cli("verify", expect=1).stderr.decode()
    assert f"corrupt blob {image.config.digest}" in err
    out = cli("verify", "--repair", expect=1).stdout.decode()
    assert f"repaired: removed corrupt blob {image.config.digest}" in out
    assert not store.exists(image.config.digest)
    err = cli("verify", expect=1).stderr.decode()
    assert err == f"contentstore: error: example.com/app:1 points to missing blob {image.config.digest}\n"


def test_plugins_command(cli):
    out = cli("plugins").stdout.decode().splitlines()
    assert out[0].split() == ["NAME", "KIND", "VERSION", "DISTRIBUTION"]
    names = {line.split()[0] for line in out[1:]}
    assert {"schema1", "schema2", "oci", "manifestlist"} <= names
    out = cli("-p", "no:schema1", "plugins").stdout.decode()
    assert "schema1" not in out
    err = cli("-p", "no:oci", "plugins", expect=1).stderr.decode()
    assert "cannot be disabled" in err


PROGRAM = """
import atexit, sys, threading, time
from contentstore import cli
atexit.register(lambda: print("atexit handlers ran"))  # to stdout, not flushed
if sys.argv[1] == "--late-thread":
    del sys.argv[1]
    main = cli.main
    def late():
        time.sleep(0.2)
        print("the thread finished", flush=True)
    def with_a_thread():
        status = main()
        threading.Thread(target=late).start()
        return status
    cli.main = with_a_thread
cli.run()
"""


@pytest.mark.parametrize("late_thread", [False, True])
def test_the_program_exits_as_the_interpreter_would(cli, tmp_path, late_thread):
    """run() (the script and python -m contentstore) skips tearing the interpreter down,
    but exits with main's status after the atexit handlers, with the output flushed, and
    waits for a thread that is not a daemon."""
    env = {**os.environ, "CONTENTSTORE_ROOT": str(cli.root), "CONTENTSTORE_CONFIG": str(tmp_path / "none.toml")}
    flag = ["--late-thread"] if late_thread else []
    for args, status in ((["images"], 0), (["blob", "get", "sha256:" + "0" * 64], 1)):
        proc = subprocess.run([sys.executable, "-c", PROGRAM, *flag, *args], capture_output=True, text=True,
                              env=env)
        assert proc.returncode == status, proc.stderr
        assert proc.stdout.endswith(("the thread finished\n" if late_thread else "") + "atexit handlers ran\n")
