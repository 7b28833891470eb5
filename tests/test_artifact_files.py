"""contentstore.image.artifacts: an artifact's files written by title, verified, all or
none, never outside the target directory; and an OCI archive's referrers enter the
subject index on import."""

import io
import json
import os
import tarfile

import pytest

from contentstore.errors import BlobNotFound, CorruptBlob, InvalidArtifact
from contentstore.image.artifacts import titled, write_files
from contentstore.model import artifact
from contentstore.model import mediatypes as mt
from contentstore.model.manifest import Descriptor
from contentstore.testing import build_image


def file_layer(store, title, data: bytes, media_type=None) -> Descriptor:
    info = store.put(data)
    return Descriptor(media_type or artifact.DEFAULT_FILE_TYPE, info.digest, info.size, None,
                      {artifact.TITLE_ANNOTATION: title})


def test_files_are_written_by_title(store, tmp_path):
    layers = [file_layer(store, "sbom.json", b'{"sbom": 1}', "application/spdx+json"),
              file_layer(store, "README", b"read me\n"),
              Descriptor(mt.OCI_EMPTY, artifact.EMPTY_DESCRIPTOR.digest, 2)]  # untitled
    store.put(artifact.EMPTY_CONFIG)
    target = tmp_path / "out" / "deeper"  # created
    written = write_files(layers, target, store.content)
    assert written.files == [target / "sbom.json", target / "README"]
    assert (target / "sbom.json").read_bytes() == b'{"sbom": 1}'
    assert (target / "README").read_bytes() == b"read me\n"
    assert written.untitled == [layers[2]]
    assert sorted(os.listdir(target)) == ["README", "sbom.json"]  # no temporary file left
    assert (target / "README").stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


@pytest.mark.parametrize("title", ["../escape", "..", "/etc/passwd", "a/b", "."])
def test_unsafe_titles_write_nothing(store, tmp_path, title):
    layers = [file_layer(store, "good.txt", b"good"), file_layer(store, title, b"evil")]
    with pytest.raises(InvalidArtifact) as info:
        write_files(layers, tmp_path / "out", store.content)
    assert "must be a plain file name" in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "out").exists() and not (tmp_path / "escape").exists()


def test_repeated_titles_are_refused(store):
    with pytest.raises(InvalidArtifact, match="two files of the artifact are titled 'a.txt'"):
        titled([file_layer(store, "a.txt", b"1"), file_layer(store, "a.txt", b"2")])


def test_a_corrupt_or_missing_blob_writes_nothing(store, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "first.txt").write_bytes(b"what was there")
    first = file_layer(store, "first.txt", b"first, new")
    second = file_layer(store, "second.txt", b"second" * 1000)
    path = store.content.path(second.digest)
    path.chmod(0o644)
    path.write_bytes(b"SECOND" * 1000)  # changed on disk, same size
    with pytest.raises(CorruptBlob):
        write_files([first, second], out, store.content)
    assert sorted(os.listdir(out)) == ["first.txt"] and (out / "first.txt").read_bytes() == b"what was there"

    missing = Descriptor(artifact.DEFAULT_FILE_TYPE, "sha256:" + "0" * 64, 1, None,
                         {artifact.TITLE_ANNOTATION: "missing"})
    with pytest.raises(BlobNotFound):
        write_files([first, missing], out, store.content)
    assert sorted(os.listdir(out)) == ["first.txt"]


def test_a_symlink_in_the_way_is_replaced_not_followed(store, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim"
    victim.write_bytes(b"untouched")
    (out / "f").symlink_to(victim)
    write_files([file_layer(store, "f", b"new")], out, store.content)
    assert victim.read_bytes() == b"untouched"
    assert not (out / "f").is_symlink() and (out / "f").read_bytes() == b"new"


def test_import_of_an_oci_archive_indexes_its_referrers(store, tmp_path):
    image = build_image(store, "example.com/app:1")
    store.put(artifact.EMPTY_CONFIG)
    raw = artifact.artifact_manifest([], "application/vnd.example.sig", image)
    sig = store.put(raw)
    archive = tmp_path / "app.tar"
    store.export("example.com/app:1", archive)
    with tarfile.open(archive, "a") as tar:  # the signature rides along, unnamed
        info = tarfile.TarInfo(f"blobs/sha256/{sig.digest.hex}")
        info.size = len(raw)
        tar.addfile(info, io.BytesIO(raw))
    from contentstore import Store
    other = Store(tmp_path / "other")
    other.import_archive(archive)
    [listed] = other.metadata.referrers(image.digest)
    assert listed.digest == sig.digest and listed.artifact_type == "application/vnd.example.sig"
    assert json.loads(other.content.read(sig.digest))["subject"]["digest"] == image.digest
    assert sig.digest not in {b.digest for b in other.gc().removed}
