"""Integrity of the store on disk under bad input (issue 12): nothing corrupt is used,
every damaged file is one clean error.

Real parts throughout: blobs are damaged by writing to their files, pushes go to a real
registry, exports are read by skopeo, tag races gc in real processes, metadata.db is
damaged for real, and "disk full" is a 2 MiB tmpfs.
"""

from __future__ import annotations

import errno
import io
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import requests
from contentstore import Store
from contentstore.errors import (BlobNotFound, CorruptBlob, DigestMismatch, MetadataDamaged, SizeMismatch,
                                 StoreDamaged)
from contentstore.local.metadata import ORIGINAL_LABEL
from contentstore.model import digest as digests
from contentstore.progress import human_size
from contentstore.testing import build_image, build_index, make_layer, push_test_image

# -- helpers ------------------------------------------------------------------------------


def cli(root: Path, *args: str, expect: int = 0, input: bytes | None = None) -> subprocess.CompletedProcess:
    """``contentstore --root ROOT ARGS`` as a user runs it; its exit status must be ``expect``."""
    proc = subprocess.run([sys.executable, "-m", "contentstore", "--root", str(root), *args],
                          capture_output=True, input=input)
    assert proc.returncode == expect, (proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace"))
    proc.out, proc.err = proc.stdout.decode(), proc.stderr.decode()
    return proc


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The one line of stderr, which must be exactly one ``contentstore: error: ...`` line."""
    lines = proc.err.splitlines()
    assert len(lines) == 1 and proc.err.endswith("\n"), proc.err
    assert lines[0].startswith("contentstore: error: "), proc.err
    return lines[0]


def assert_verbose_same_error(root: Path, *args: str) -> str:
    """Without -v: one line, exit 1; with -v: the traceback first, then the same line
    last, exit 1."""
    line = error_line(cli(root, *args, expect=1))
    verbose = cli(root, "-v", *args, expect=1).err.splitlines()
    assert verbose[0] == "Traceback (most recent call last):", verbose[:3]
    assert verbose[-1] == line
    return line


def corrupt(store: Store, digest: str, offset: int = 0) -> None:
    """Change one byte of a stored blob on disk, as bit rot or a stray write would."""
    path = store.content.path(digest)
    path.chmod(0o644)
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))
    path.chmod(0o444)


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "integrity-config.toml"
    path.write_text(text)
    return path


def skopeo_inspect(target: str) -> dict:
    out = subprocess.run(["skopeo", "inspect", "--tls-verify=false", target], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


# -- the verifying reader ---------------------------------------------------------------------


def test_a_changed_blob_raises_before_its_last_bytes_and_names_the_blob(store):
    data = os.urandom(3 << 20)
    digest = store.put(data).digest
    with store.content.open_verified(digest) as blob:
        assert blob.read() == data and blob.verified

    corrupt(store, digest, offset=1000)
    got = bytearray()
    with pytest.raises(CorruptBlob) as info, store.content.open_verified(digest) as blob:
        while chunk := blob.read(64 * 1024):
            got += chunk
    assert len(got) < len(data)  # the consumer never held the whole changed blob
    error = info.value
    assert isinstance(error, DigestMismatch) and isinstance(error, StoreDamaged)
    assert error.digest == digest and error.expected == digest and error.actual == digests.of_bytes(
        data[:1000] + bytes([data[1000] ^ 0xFF]) + data[1001:])
    assert str(error).startswith(f"digest mismatch for blob {digest}: expected {digest}, got ")
    assert "\n" not in str(error)


def test_reads_that_skip_or_go_back_are_still_verified_in_full(store):
    """What a chunked upload does when it resumes mid-blob, or retries a chunk."""
    data = os.urandom(3 << 20)
    digest = store.put(data).digest
    with store.content.open_verified(digest) as blob:
        blob.read(1 << 20)
        blob.seek(1 << 19)                     # a chunk retried
        assert blob.read(1 << 20) == data[1 << 19:(1 << 19) + (1 << 20)]
        blob.seek(2 << 20)                     # resumed further on
        assert blob.read() == data[2 << 20:] and blob.verified

    corrupt(store, digest, offset=10)          # before anything this reader returns
    with store.content.open_verified(digest) as blob:
        blob.seek(2 << 20)
        with pytest.raises(CorruptBlob):
            while blob.read(1 << 16):
                pass


def chunked_upload(store: Store, digest: str, size: int, chunk: int, resume_at: int) -> bytes:
    """Push's chunk windows over the verifying reader, as ``_send_chunks`` reads them: the
    second chunk breaks halfway, and the upload goes on from the offset the registry says
    it holds; return the bytes the registry ends up with."""
    from contentstore.remote.push import _Window

    received = bytearray()
    with store.content.open_verified(digest, size) as blob:
        offset, cut = 0, False
        while offset < size:
            length = min(chunk, size - offset)
            blob.seek(offset)
            window = _Window(blob, length)
            if offset == chunk and not cut:
                window.read(length // 2)      # the connection breaks here
                cut = True
                offset = resume_at            # what the registry reports it holds
                del received[resume_at:]
                continue
            received += window.read()
            offset += length
        assert blob.verified
    return bytes(received)


def test_a_chunked_upload_resumed_mid_blob_is_verified_in_full(store):
    data = os.urandom(1 << 20)
    digest = store.put(data).digest
    assert chunked_upload(store, digest, len(data), 300_000, resume_at=300_000) == data
    corrupt(store, digest, offset=10)  # in the first chunk, sent before the cut
    with pytest.raises(CorruptBlob):
        chunked_upload(store, digest, len(data), 300_000, resume_at=300_000)


def test_a_size_other_than_the_descriptors_is_an_error_at_open(store):
    data = b"sized content\n" * 100
    digest = store.put(data).digest
    with pytest.raises(SizeMismatch) as info:
        store.content.open_verified(digest, len(data) + 1)  # the descriptor is wrong, the blob fine
    assert digest in str(info.value)
    path = store.content.path(digest)
    path.chmod(0o644)
    os.truncate(path, len(data) // 2)                         # now the blob is damaged
    with pytest.raises(CorruptBlob):
        store.content.open_verified(digest, len(data))
    with pytest.raises(CorruptBlob):
        store.content.read(digest)                            # manifests and configs too


# -- put always checks its bytes ---------------------------------------------------------------


def test_put_checks_the_bytes_even_when_the_digest_is_stored_and_right_bytes_repair_a_changed_copy(store):
    data = os.urandom(2 << 20)
    digest = store.put(data).digest
    corrupt(store, digest, offset=5)
    damaged = store.content.path(digest).read_bytes()

    wrong = bytearray(data)
    wrong[7] ^= 1
    for attempt in (bytes(wrong), io.BytesIO(bytes(wrong))):
        with pytest.raises(DigestMismatch):
            store.put(attempt, expected=digest)
    assert store.content.path(digest).read_bytes() == damaged  # nothing was installed
    assert store.content.ingests() == []

    assert store.put(io.BytesIO(data), expected=digest) == (digest, len(data))
    assert store.content.rehash(digest) == digest
    assert store.content.path(digest).stat().st_mode & 0o777 == 0o444
    assert store.verify().ok

    small = store.put(b"small and in memory").digest
    corrupt(store, small)
    assert store.put(b"small and in memory", expected=small).digest == small
    assert store.content.path(small).read_bytes() == b"small and in memory"


def test_cli_blob_put_refuses_wrong_bytes_for_a_stored_digest_and_right_bytes_repair(tmp_path):
    root = tmp_path / "store"
    right, wrong = tmp_path / "right", tmp_path / "wrong"
    right.write_bytes(b"the right bytes\n" * 1000)
    wrong.write_bytes(b"the wrong bytes\n" * 1000)
    digest = cli(root, "blob", "put", str(right)).out.strip()
    line = error_line(cli(root, "blob", "put", str(wrong), "--expected", digest, expect=1))
    assert line.startswith("contentstore: error: digest mismatch for blob: expected " + digest)
    corrupt(Store(root), digest)
    cli(root, "verify", expect=1)
    cli(root, "blob", "put", str(right), "--expected", digest)
    cli(root, "verify")


# -- export and push --------------------------------------------------------------------------


@pytest.mark.needs("skopeo")
@pytest.mark.parametrize("format", ["oci", "docker"])
def test_export_of_a_changed_blob_is_one_error_naming_it_and_writes_no_archive(tmp_path, format):
    root = tmp_path / "store"
    store = Store(root)
    layers = [{"a.txt": "first\n"}, {"b.txt": "second\n"}]
    build_image(store, "example.com/app:1", layers=layers)
    image = store.image("example.com/app:1")
    good = tmp_path / "good.tar"
    cli(root, "export", "example.com/app:1", str(good), "--format", format)
    kind = "oci-archive" if format == "oci" else "docker-archive"
    assert len(skopeo_inspect(f"{kind}:{good}")["Layers"]) == 2

    layer = image.layers[1].digest
    corrupt(store, layer, offset=20)
    out = tmp_path / "out" / "app.tar"
    out.parent.mkdir()
    line = assert_verbose_same_error(root, "export", "example.com/app:1", str(out), "--format", format)
    assert line.startswith(f"contentstore: error: digest mismatch for blob {layer}: expected {layer}, got sha256:")
    assert list(out.parent.iterdir()) == []  # no archive, not even a partial one

    # The right bytes put again repair the store, and the export works.
    blob, _ = make_layer(layers[1])
    store.put(blob, expected=layer)
    cli(root, "export", "example.com/app:1", str(out), "--format", format)
    assert len(skopeo_inspect(f"{kind}:{out}")["Layers"]) == 2


@pytest.mark.needs("skopeo", "docker-registry")
@pytest.mark.parametrize("chunk_size", [None, 65536], ids=["monolithic", "chunked"])
def test_push_of_a_changed_blob_is_one_error_naming_it_and_the_registry_never_gets_it(
        registry, registry_factory, tmp_path, chunk_size):
    ref = push_test_image(registry, "integrity/push:1", {"big.bin": os.urandom(300_000)})
    root = tmp_path / "store"
    config = write_config(tmp_path, f"upload_chunk_size = {chunk_size}\n" if chunk_size else "")
    cli(root, "pull", ref)
    store = Store(root)
    layer = store.image(ref).layers[0]
    corrupt(store, layer.digest, offset=layer.size - 100)  # in the last chunk
    other = registry_factory()  # on the same registry the blob would be mounted, not sent
    dest = f"{other.host}/integrity/pushed:1"
    line = error_line(cli(root, "--config", str(config), "push", ref, dest, expect=1))
    assert line.startswith(f"contentstore: error: digest mismatch for blob {layer.digest}: ")
    base = f"{other.url}/v2/integrity/pushed"
    assert requests.head(f"{base}/blobs/{layer.digest}", timeout=10).status_code == 404
    assert requests.head(f"{base}/manifests/1", timeout=10).status_code == 404


@pytest.mark.needs("skopeo", "docker-registry")
def test_a_chunked_push_retried_after_a_dropped_chunk_still_verifies_the_bytes_sent_before(
        registry, registry_factory, proxy_factory, tmp_path):
    ref = push_test_image(registry, "integrity/retry:1", {"big.bin": os.urandom(400_000)})
    other = registry_factory()
    proxy = proxy_factory(other.url)
    config = write_config(tmp_path, "upload_chunk_size = 100000\nmax_concurrent_uploads = 1\n")

    def second_chunk_dropped() -> None:  # the first PATCH goes through, the second is dropped
        proxy.faults({"match": "PATCH /v2/dest/", "times": 1},
                     {"match": "PATCH /v2/dest/", "times": 1, "drop_request": True})

    damaged = Store(tmp_path / "damaged", config=config)
    layer = damaged.pull(ref).layers[0].digest
    corrupt(damaged, layer, offset=100)  # in the first chunk, which the registry took before the cut
    second_chunk_dropped()
    with pytest.raises(CorruptBlob) as info:
        damaged.push(ref, f"{proxy.host}/dest/bad:1")
    assert info.value.digest == layer
    uploads = proxy.requests("/v2/dest/bad/blobs/uploads/")
    dropped = [i for i, e in enumerate(uploads) if e["method"] == "PATCH" and e["status"] is None]
    assert uploads[dropped[0] + 1]["method"] == "GET"  # the dropped chunk, then a retry
    assert not [e for e in uploads if e["method"] == "PUT" and f"digest={layer}" in e["path"]]  # never closed
    assert requests.head(f"{other.url}/v2/dest/bad/blobs/{layer}", timeout=10).status_code == 404
    assert requests.head(f"{other.url}/v2/dest/bad/manifests/1", timeout=10).status_code == 404

    healthy = Store(tmp_path / "healthy", config=config)
    image = healthy.pull(ref)
    second_chunk_dropped()
    assert healthy.push(ref, f"{proxy.host}/dest/good:1").digest == image.digest  # no false alarm
    assert skopeo_inspect(f"docker://{other.host}/dest/good:1")["Digest"] == image.digest


# -- verify and verify --repair ------------------------------------------------------------------


@pytest.mark.needs("skopeo", "docker-registry")
def test_verify_repair_removes_a_changed_blob_and_the_next_pull_fetches_it(registry, tmp_path):
    ref = push_test_image(registry, "integrity/repair:1", {"r.txt": "repair me\n"})
    root = tmp_path / "store"
    cli(root, "pull", ref)
    store = Store(root)
    layer = store.image(ref).layers[0].digest
    corrupt(store, layer)

    err = cli(root, "verify", expect=1).err
    assert err.startswith(f"contentstore: error: corrupt blob {layer}: content hashes to sha256:")
    assert store.exists(layer)  # plain verify changes nothing
    proc = cli(root, "verify", "--repair", expect=1)
    assert f"repaired: removed corrupt blob {layer}" in proc.out
    assert not store.exists(layer)
    err = cli(root, "verify", expect=1).err
    assert f"contentstore: error: {ref} points to missing blob {layer}\n" in err  # (and ref@digest)

    cli(root, "pull", ref)
    assert store.content.rehash(layer) == layer
    assert "0 corrupt, 0 missing" in cli(root, "verify").out
    cli(root, "export", ref, str(tmp_path / "app.tar"))
    assert skopeo_inspect(f"oci-archive:{tmp_path / 'app.tar'}")["Layers"] == [layer]


def test_verify_checks_index_json_sizes_and_repair_corrects_them(tmp_path):
    root = tmp_path / "store"
    store = Store(root)
    desc = build_image(store, "example.com/app:1")
    index_path = root / "index.json"
    index = json.loads(index_path.read_text())
    index["manifests"][0]["size"] += 3
    index_path.write_text(json.dumps(index))

    err = cli(root, "verify", expect=1).err
    assert err == (f"contentstore: error: example.com/app:1: index.json says {desc.digest} has "
                   f"{desc.size + 3} bytes, the blob has {desc.size}\n")
    report = store.verify()
    assert not report.ok and report.corrupt == [] and report.missing == []
    assert [(p.digest, p.stated, p.actual) for p in report.sizes] == [(desc.digest, desc.size + 3, desc.size)]

    proc = cli(root, "verify", "--repair", expect=1)
    assert f"repaired: corrected the size of {desc.digest} in index.json to {desc.size}" in proc.out
    assert json.loads(index_path.read_text())["manifests"][0]["size"] == desc.size
    cli(root, "verify")


def test_verify_names_missing_layers_of_a_present_manifest_but_not_platforms_an_index_omits(store):
    build_index(store, "example.com/multi:1", [("linux", "amd64", None), ("linux", "arm64", "v8")])
    arm = store.image("example.com/multi:1", platform="linux/arm64")
    for digest in [arm.manifest.digest, arm.config.digest, *(l.digest for l in arm.layers)]:
        store.delete(digest)  # a platform that was never pulled
    assert store.verify().ok
    amd = store.image("example.com/multi:1", platform="linux/amd64")
    store.delete(amd.layers[0].digest)
    assert store.verify().missing == [("example.com/multi:1", amd.layers[0].digest)]


# -- a damaged metadata.db ------------------------------------------------------------------------


def damage_garbage(path: Path) -> None:
    path.write_bytes(os.urandom(20_000))


def damage_truncated(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def damage_directory(path: Path) -> None:
    path.unlink()
    path.mkdir()
    (path / "something").write_text("a folder where the database was")


@pytest.mark.parametrize("damage", [damage_garbage, damage_truncated, damage_directory],
                         ids=["garbage", "truncated", "directory"])
def test_a_damaged_metadata_db_is_one_error_naming_it_and_repair_keeps_the_gc_labels(tmp_path, damage):
    root = tmp_path / "store"
    store = Store(root)
    desc = build_image(store, "example.com/app:1")
    original = store.put(b"the signed original manifest").digest
    store.set_label(desc.digest, ORIGINAL_LABEL, original)   # only this label keeps it from gc
    for i in range(300):                                       # a database of some size
        store.metadata.add_diff_id(f"sha256:{i:064x}", desc.digest, "example.com", f"repo{i}")
    db = root / ".contentstore" / "metadata.db"
    damage(db)

    for args in (["gc"], ["gc", "--dry-run"]):
        line = assert_verbose_same_error(root, *args)
        assert line.startswith(f"contentstore: error: gc refused: metadata database {db} is damaged (")
        assert line.endswith("`contentstore verify --repair` rebuilds it")
    assert store.exists(original)
    assert "example.com/app:1" in cli(root, "images").out  # what needs no metadata still works

    err = cli(root, "verify", expect=1).err
    assert err.startswith(f"contentstore: error: metadata database {db} is damaged (") and err.count("\n") == 1
    with pytest.raises(MetadataDamaged):
        Store(root).metadata.check()
    assert not Store(root).verify().ok

    proc = cli(root, "verify", "--repair", expect=1)
    assert f"repaired: rebuilt {db}: the damaged file is kept as {db}.damaged-" in proc.out
    assert "1 labels restored from labels.json" in proc.out
    kept = [p for p in db.parent.iterdir() if p.name.startswith("metadata.db.damaged-")]
    assert len(kept) == 1 and kept[0].is_dir() == (damage is damage_directory)
    cli(root, "verify")
    fresh = Store(root)
    assert fresh.labels(desc.digest) == {ORIGINAL_LABEL: original}
    assert fresh.metadata.diff_id(desc.digest) is None  # a cache: pulls relearn it
    assert "0 blobs" in cli(root, "gc").out and fresh.exists(original)


def test_a_lost_metadata_db_comes_back_with_its_labels_and_a_rebuild_without_a_copy_says_so(tmp_path):
    root = tmp_path / "store"
    store = Store(root)
    desc = build_image(store, "example.com/app:1")
    original = store.put(b"original manifest").digest
    store.set_label(desc.digest, ORIGINAL_LABEL, original)
    db = root / ".contentstore" / "metadata.db"
    db.unlink()
    assert Store(root).labels(desc.digest) == {ORIGINAL_LABEL: original}
    assert original not in {b.digest for b in Store(root).gc().removed}

    (root / ".contentstore" / "labels.json").unlink()
    damage_garbage(db)
    proc = cli(root, "verify", "--repair", expect=1)
    assert "no labels could be restored" in proc.out and "schema1" in proc.out


# -- a full disk ----------------------------------------------------------------------------------


@pytest.fixture
def small_fs(tmp_path):
    """A 2 MiB tmpfs (needs root); unmounted when the test ends."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode:
        if os.environ.get("CI"):
            pytest.fail(f"cannot mount a tmpfs: {done.stderr}")
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def free_bytes(path: Path) -> int:
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def fill(directory: Path) -> None:
    with open(directory / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


def test_disk_full_names_the_blob_and_file_and_gc_ingests_frees_the_space(small_fs, tmp_path):
    root = small_fs / "store"
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3 << 20))
    digest = digests.of_bytes(big.read_bytes())
    free = free_bytes(small_fs)

    line = error_line(cli(root, "blob", "put", str(big), "--expected", digest, expect=1))
    ingest = Store(root).content._ingest_path(f"put-{digest}") / "data"
    assert line == f"contentstore: error: cannot write blob {digest} ({ingest}): No space left on device"
    assert free_bytes(small_fs) < free // 4  # the partial ingest holds the space, for a resume
    assert "0 ingests" in cli(root, "gc").out  # fresh: a plain gc keeps it for 24 h
    out = cli(root, "gc", "--ingests").out
    assert f"deleted ingest: put-{digest}" in out and "1 ingests" in out
    assert free_bytes(small_fs) >= free - 64 * 1024

    # Without a digest the ingest cannot be resumed: it is dropped at once.
    line = error_line(cli(root, "blob", "put", "-", input=big.read_bytes(), expect=1))
    assert line.startswith("contentstore: error: cannot write a new blob (ingest 'put-")
    assert line.endswith("/data): No space left on device")
    assert Store(root).content.ingests() == [] and free_bytes(small_fs) >= free - 64 * 1024

    # index.json on a full disk: the error names it, and the old index.json stays whole.
    small = tmp_path / "small.bin"
    small.write_bytes(b"a small blob\n")
    small_digest = cli(root, "blob", "put", str(small)).out.strip()
    fill(small_fs)
    line = error_line(cli(root, "tag", small_digest, "example.com/full:1", expect=1))
    assert line == f"contentstore: error: cannot write index.json ({root / 'index.json'}): No space left on device"
    assert json.loads((root / "index.json").read_text())["manifests"] == []
    assert not list(root.glob(".index.json.*"))


@pytest.mark.needs("skopeo", "docker-registry")
def test_a_pull_onto_a_full_disk_names_the_layer(small_fs, registry):
    ref = push_test_image(registry, "integrity/full:1", {"big.bin": os.urandom(3 << 20)})
    [layer] = skopeo_inspect(f"docker://{ref}")["Layers"]
    config = json.loads(subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
                                       check=True, capture_output=True).stdout)["config"]["digest"]
    root = small_fs / "store"
    line = error_line(cli(root, "-q", "pull", ref, expect=1))
    # The config downloads beside the layer: whichever write meets the full disk is named.
    assert any(line.startswith(f"contentstore: error: cannot write blob {blob} ({root}/.contentstore/ingest/")
               for blob in (layer, config)), line
    assert line.endswith("/data): No space left on device")
    cli(root, "gc", "--ingests")
    assert free_bytes(small_fs) > (1 << 20) + (1 << 19)


# -- tag and gc in real processes -----------------------------------------------------------------


def _tag(store: Store, digest: str, name: str, start) -> None:
    start.wait()
    try:
        store.tag(digest, name)
    except BlobNotFound:
        os._exit(3)  # refused: the blob was gone (gc ran first), which is fine
    os._exit(0)


def _gc(store: Store, start) -> None:
    start.wait()
    store.gc()
    os._exit(0)


def test_tag_racing_gc_never_reports_success_for_content_gc_deleted(tmp_path):
    store = Store(tmp_path / "store")
    ctx = multiprocessing.get_context("fork")
    tagged = refused = 0
    for attempt in range(40):
        manifest = build_image(store, None, {"f.txt": f"attempt {attempt}\n"})  # no name: garbage
        start = ctx.Event()
        name = f"example.com/race:{attempt}"
        tagger = ctx.Process(target=_tag, args=(store, manifest.digest, name, start))
        collector = ctx.Process(target=_gc, args=(store, start))
        tagger.start()
        collector.start()
        start.set()
        tagger.join(60)
        collector.join(60)
        assert collector.exitcode == 0 and tagger.exitcode in (0, 3)
        if tagger.exitcode == 0:
            tagged += 1
            assert store.exists(manifest.digest), f"attempt {attempt}: {name} names content gc deleted"
            assert store.resolve(name).digest == manifest.digest
        else:
            refused += 1
            assert name not in store.references()
    report = store.verify()
    assert report.ok, (report.missing, tagged, refused)


# -- index.json and stray files --------------------------------------------------------------------


def test_index_json_nested_100000_deep_is_one_error_naming_it(tmp_path):
    root = tmp_path / "store"
    Store(root)
    index = root / "index.json"
    index.write_text("[" * 100_000 + "]" * 100_000)
    for args in (["images"], ["tag", "example.com/x:1", "y:1"], ["inspect", "example.com/x:1"]):
        line = assert_verbose_same_error(root, *args)
        assert line == f"contentstore: error: {index} is not an OCI image index: nested too deeply"
    assert error_line(cli(root, "gc", expect=1)) == \
        f"contentstore: error: gc refused: {index} is not an OCI image index: nested too deeply"
    err = cli(root, "verify", expect=1).err
    assert err == f"contentstore: error: {index} is not an OCI image index: nested too deeply\n"
    assert index.read_text() == "[" * 100_000 + "]" * 100_000  # never written over


@pytest.mark.parametrize("content, says", [
    ("{not json", "{index} is not valid JSON: "),
    ('{"manifests": {"a": 1}}', "{index} is not an OCI image index"),
    ('{"manifests": [42]}', "invalid index.json entry: missing or malformed field"),
    ('{"manifests": [{"digest": "sha256:12", "size": 1}]}', "invalid index.json entry: invalid digest"),
])
def test_a_malformed_index_json_is_one_error_naming_it(tmp_path, content, says):
    root = tmp_path / "store"
    blob = Store(root).put(b"a blob to tag").digest
    index = root / "index.json"
    index.write_text(content)
    for args in (["images"], ["gc"], ["verify"]):
        line = error_line(cli(root, *args, expect=1))
        assert says.format(index=index) in line and str(index) in line
    with pytest.raises(StoreDamaged):
        Store(root).layout.entries()
    whole_file = "entry" not in says
    tag = cli(root, "tag", blob, "example.com/x:1", expect=1 if whole_file else 0)
    if whole_file:  # never written over
        assert says.format(index=index) in error_line(tag) and index.read_text() == content
    else:           # the new entry is added, the malformed one kept as it was
        assert json.loads(index.read_text())["manifests"][0] == json.loads(content)["manifests"][0]


def test_a_ref_name_that_is_a_number_names_nothing_keeps_its_content_and_verify_says_so(tmp_path):
    root = tmp_path / "store"
    store = Store(root)
    desc = build_image(store, "example.com/app:1")
    kept = {desc.digest, store.image("example.com/app:1").config.digest}
    path = root / "index.json"
    index = json.loads(path.read_text())
    index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] = 5
    path.write_text(json.dumps(index))

    assert cli(root, "images").out.splitlines()[1:] == []
    cli(root, "tag", desc.digest, "example.com/other:1")  # index.json is still written
    assert "0 blobs" in cli(root, "gc").out and kept <= {b.digest for b in store.blobs()}
    err = cli(root, "verify", expect=1).err
    assert err == (f"contentstore: error: {path}: entry 0 ({desc.digest}) has a "
                   f"org.opencontainers.image.ref.name annotation that is not a string: 5\n")


def test_gc_removes_stray_temporary_files_and_reports_them(tmp_path):
    root = tmp_path / "store"
    store = Store(root)
    build_image(store, "example.com/app:1")
    state = root / ".contentstore"
    strays = {
        root / ".index.json.k1ll3d.tmp": b'{"schemaVersion": 2, "manif',   # a tagger killed mid-write
        state / "ingest" / "stray-file": b"not an ingest folder",           # made every gc fail
        state / "tmp" / ".sha256-half.tmp": b"half a put",
        state / ".labels.json.x9.tmp": b"{",
    }
    for path, data in strays.items():
        path.write_bytes(data)
    with store.writer("live ingest") as writer:  # a real ingest: kept, it is fresh
        writer.write(b"partial")

    out = cli(root, "gc", "--dry-run").out
    for path, data in strays.items():
        assert f"would delete stray file: {path} ({human_size(len(data))})" in out
        assert path.exists()
    out = cli(root, "gc").out
    assert out.splitlines()[-1].startswith(
        f"Total reclaimed space: {human_size(sum(len(d) for d in strays.values()))} (0 blobs, 0 ingests, "
        f"4 stray files;")
    assert not any(path.exists() for path in strays)
    assert [i.ref for i in store.content.ingests()] == ["live ingest"]
    cli(root, "verify")


def test_gc_ingests_drops_what_killed_writers_left_and_keeps_what_live_ones_hold(tmp_path):
    root = tmp_path / "store"
    store = Store(root)
    writer = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import sys, time
        from contentstore import Store
        with Store(sys.argv[1]).writer("killed pull") as w:
            w.write(b"x" * 100_000)
            w._file.flush()
            print("written", flush=True)
            time.sleep(60)
    """), str(root)], stdout=subprocess.PIPE, text=True)
    live = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import sys, time
        from contentstore import Store
        with Store(sys.argv[1]).writer("live pull") as w:
            w.write(b"y" * 1000)
            w._file.flush()
            print("written", flush=True)
            time.sleep(60)
    """), str(root)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "written"
        assert live.stdout.readline().strip() == "written"
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
        assert "0 ingests" in cli(root, "gc").out  # both fresh: kept for 24 h
        out = cli(root, "gc", "--ingests").out
        assert f"deleted ingest: killed pull ({human_size(100_000)})" in out
        assert "live pull" not in out and "1 ingests" in out
        assert [(i.ref, i.active) for i in store.content.ingests()] == [("live pull", True)]
    finally:
        for proc in (writer, live):
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
