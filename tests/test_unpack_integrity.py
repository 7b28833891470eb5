"""unpack checks what it reads back from the store as it streams (issue 12): each layer
blob against its digest and its uncompressed bytes against the config's diffID, the
bytes tarfile does not read included; a mismatch names the blob and leaves DIR as it
was."""

import gzip
import hashlib
import os
import stat
from pathlib import Path

import pytest

from contentstore import Store
from contentstore.errors import DigestMismatch
from contentstore.model import mediatypes as mt
from contentstore.testing import image_from_layers

from unpacking import entry, layer_of, tar_of

CONTENT = tar_of(entry("etc/", "dir"), entry("etc/motd", data="hello\n" * 1000), entry("bin/sh", data="#!\n" * 500))


def blob_path(store: Store, digest: str) -> Path:
    algorithm, hex_ = digest.split(":")
    return store.root / "blobs" / algorithm / hex_


def flip(path: Path, offset: int) -> None:
    path.chmod(0o644)  # blobs are read-only
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x20
    path.write_bytes(bytes(data))


def two_layer_image(store: Store, compress: bool) -> tuple[str, list[str]]:
    ref = "example.com/integrity/app:1"
    first = layer_of(tar_of(entry("base.txt", data="base\n")), compress)
    second = layer_of(CONTENT, compress)
    image_from_layers(store, ref, [first, second])
    return ref, [str(layer.digest) for layer in store.image(ref).layers]


def assert_untouched(store, ref, target: Path, what: str, existed: bool):
    with pytest.raises(DigestMismatch) as info:
        store.unpack(ref, target)
    assert str(info.value).startswith(f"digest mismatch for {what}:")
    assert "\n" not in str(info.value)
    if existed:
        assert target.is_dir() and list(target.iterdir()) == []
    else:
        assert not target.exists()
    assert [p.name for p in target.parent.iterdir()] == ([target.name] if existed else [])


@pytest.mark.parametrize("existed", [False, True], ids=["absent-dir", "empty-dir"])
@pytest.mark.parametrize("where", ["body", "header", "end"])
@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "plain"])
def test_a_damaged_layer_blob_is_named_and_dir_is_left_as_it_was(compress, where, existed, tmp_path):
    store = Store(tmp_path / "store")
    ref, digests = two_layer_image(store, compress)
    path = blob_path(store, digests[1])
    size = path.stat().st_size
    offset = {"body": size // 2, "header": 20 if compress else 3, "end": size - 3}[where]
    flip(path, offset)
    work = tmp_path / "work"
    work.mkdir()
    target = work / "rootfs"
    if existed:
        target.mkdir()
    assert_untouched(store, ref, target, f"layer {digests[1]}", existed)


def test_a_wrong_diff_id_is_named_as_the_uncompressed_layer(tmp_path):
    store = Store(tmp_path / "store")
    blob, _, media_type = layer_of(CONTENT, compress=True)
    image_from_layers(store, "example.com/integrity/diffid:1", [(blob, "sha256:" + "0" * 64, media_type)])
    digest = str(store.image("example.com/integrity/diffid:1").layers[0].digest)
    (tmp_path / "work").mkdir()
    assert_untouched(store, "example.com/integrity/diffid:1", tmp_path / "work" / "rootfs",
                     f"uncompressed layer {digest}", existed=False)


def test_bytes_after_the_end_of_the_archive_are_checked_too(tmp_path):
    """tarfile stops at the first end-of-archive block; what follows (the second block,
    padding) is drained through the hasher: a change there is a wrong diffID."""
    padded = bytearray(CONTENT)
    assert padded[-1] == 0
    padded[-1] = 1  # in the record padding, after the end-of-archive blocks
    store = Store(tmp_path / "store")
    image_from_layers(store, "example.com/integrity/tail:1",
                      [(gzip.compress(bytes(padded)), "sha256:" + hashlib.sha256(CONTENT).hexdigest(),
                        mt.OCI_LAYER_GZIP)])
    digest = str(store.image("example.com/integrity/tail:1").layers[0].digest)
    (tmp_path / "work").mkdir()
    assert_untouched(store, "example.com/integrity/tail:1", tmp_path / "work" / "rootfs",
                     f"uncompressed layer {digest}", existed=False)


def test_an_intact_image_unpacks_with_its_checks(tmp_path):
    store = Store(tmp_path / "store")
    ref, digests = two_layer_image(store, compress=True)
    report = store.unpack(ref, tmp_path / "rootfs")
    assert report.layers == 2 and (tmp_path / "rootfs" / "etc" / "motd").read_text() == "hello\n" * 1000
    assert stat.S_IMODE(os.stat(blob_path(store, digests[1])).st_mode) == 0o444
