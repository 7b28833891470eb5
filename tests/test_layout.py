"""contentstore.local.layout.Layout: ``oci-layout`` and ``index.json``, the local references."""

import json
import multiprocessing
import os
import time

import pytest

from contentstore.errors import InvalidManifest, ReferenceNotFound
from contentstore.local.layout import Layout
from contentstore.model import digest as digests
from contentstore.model import mediatypes as mt
from contentstore.model.manifest import REF_NAME_ANNOTATION, Descriptor
from contentstore.model.platform import Platform


def descriptor(n: int, media_type: str = mt.OCI_MANIFEST, **annotations) -> Descriptor:
    return Descriptor(media_type, digests.of_bytes(f"manifest {n}".encode()), 100 + n,
                      annotations=annotations)


@pytest.fixture
def paths(tmp_path):
    root, state = tmp_path / "layout", tmp_path / "state"
    root.mkdir()
    state.mkdir()
    return root, state


@pytest.fixture
def layout(paths):
    return Layout(*paths)


def index_json(layout: Layout) -> dict:
    return json.loads(layout.index_path.read_bytes())


def test_a_new_layout_has_oci_layout_and_an_empty_index(paths, layout):
    root, _ = paths
    assert json.loads((root / "oci-layout").read_bytes()) == {"imageLayoutVersion": "1.0.0"}
    assert index_json(layout) == {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []}
    assert layout.entries() == [] and layout.names() == {}


def test_opening_again_keeps_the_index_and_repairs_a_missing_oci_layout(paths, layout):
    root, state = paths
    layout.tag("example.com/app:1", descriptor(1))
    (root / "oci-layout").unlink()
    again = Layout(root, state)
    assert again.resolve("example.com/app:1").digest == descriptor(1).digest
    assert (root / "oci-layout").is_file()


def test_tag_resolve_names(layout):
    target = Descriptor(mt.OCI_INDEX, descriptor(1).digest, 321, Platform("linux", "amd64"),
                        annotations={"org.opencontainers.image.created": "2024"})
    layout.tag("example.com/app:1", target)
    layout.tag("example.com/app:2", descriptor(2))
    resolved = layout.resolve("example.com/app:1")
    assert resolved == target and resolved.platform == Platform("linux", "amd64")
    assert resolved.annotations == {"org.opencontainers.image.created": "2024",
                                    REF_NAME_ANNOTATION: "example.com/app:1"}
    assert set(layout.names()) == {"example.com/app:1", "example.com/app:2"}
    [first, second] = index_json(layout)["manifests"]
    assert first == {"mediaType": mt.OCI_INDEX, "digest": target.digest, "size": 321,
                     "annotations": {"org.opencontainers.image.created": "2024",
                                     REF_NAME_ANNOTATION: "example.com/app:1"},
                     "platform": {"architecture": "amd64", "os": "linux"}}
    assert second["annotations"] == {REF_NAME_ANNOTATION: "example.com/app:2"}
    with pytest.raises(ReferenceNotFound, match=r"^no such image: example.com/app:3$"):
        layout.resolve("example.com/app:3")


def test_tagging_a_name_again_replaces_its_entry(layout):
    layout.tag("example.com/app:1", descriptor(1))
    layout.tag("example.com/app:2", descriptor(2))
    layout.tag("example.com/app:1", descriptor(3))
    assert layout.resolve("example.com/app:1").digest == descriptor(3).digest
    assert [e.annotations[REF_NAME_ANNOTATION] for e in layout.entries()] == \
        ["example.com/app:2", "example.com/app:1"]
    # the same target under a name that already had it: still one entry
    layout.tag("example.com/app:1", descriptor(3))
    assert len(layout.entries()) == 2


def test_untag(layout):
    layout.tag("example.com/app:1", descriptor(1))
    layout.tag("example.com/app:2", descriptor(1))
    removed = layout.untag("example.com/app:1")
    assert removed.digest == descriptor(1).digest and removed.annotations[REF_NAME_ANNOTATION] == "example.com/app:1"
    assert list(layout.names()) == ["example.com/app:2"]  # another name of the same target stays
    before = layout.index_path.read_bytes()
    with pytest.raises(ReferenceNotFound):
        layout.untag("example.com/app:1")
    assert layout.index_path.read_bytes() == before


def test_unnamed_entries_are_kept(layout):
    unnamed = descriptor(9, mt.OCI_MANIFEST, **{"org.example.note": "kept by another tool"})
    layout.update(lambda manifests: manifests.append(unnamed.to_json()))
    layout.tag("example.com/app:1", descriptor(1))
    layout.tag("example.com/app:1", descriptor(2))
    layout.untag("example.com/app:1")
    assert layout.entries() == [unnamed]
    assert layout.entries()[0].annotations == {"org.example.note": "kept by another tool"}
    assert layout.names() == {}


def test_a_failed_change_writes_nothing_and_releases_the_lock(layout):
    layout.tag("example.com/app:1", descriptor(1))
    before = layout.index_path.read_bytes()

    def change(manifests):
        manifests.clear()
        raise RuntimeError("changed my mind")

    with pytest.raises(RuntimeError):
        layout.update(change)
    assert layout.index_path.read_bytes() == before
    layout.tag("example.com/app:2", descriptor(2))  # not blocked
    assert len(layout.names()) == 2


@pytest.mark.parametrize("content, message", [
    (b"", "is not valid JSON"),
    (b'{"schemaVersion": 2, "manifests": [', "is not valid JSON"),
    (b"\xff\xfe\x00garbage", "is not valid JSON"),
    (b"[]", "is not an OCI image index"),
    (b'{"schemaVersion": 2, "manifests": {"a": 1}}', "is not an OCI image index"),
])
def test_corrupt_index_is_one_line_and_never_overwritten(layout, content, message):
    layout.index_path.write_bytes(content)
    for call in (layout.read, layout.entries, layout.names, lambda: layout.resolve("x"),
                 lambda: layout.tag("example.com/app:1", descriptor(1)), lambda: layout.untag("x")):
        with pytest.raises(InvalidManifest) as info:
            call()
        assert str(info.value).startswith(f"{layout.index_path} {message}") and "\n" not in str(info.value)
    assert layout.index_path.read_bytes() == content  # a tag never replaces what it cannot read


@pytest.mark.parametrize("entry, message", [
    ("sha256:abc", "invalid index.json entry: missing or malformed field"),
    ({"mediaType": mt.OCI_MANIFEST, "digest": "sha256:abc", "size": 1}, "invalid index.json entry: invalid digest"),
    ({"mediaType": mt.OCI_MANIFEST, "digest": descriptor(1).digest}, "invalid index.json entry: missing or"),
])
def test_malformed_entry_is_one_line(layout, entry, message):
    layout.index_path.write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))
    with pytest.raises(InvalidManifest) as info:
        layout.names()
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_index_without_manifests_is_an_empty_one(layout):
    layout.index_path.write_text('{"schemaVersion": 2}')
    assert layout.entries() == []
    layout.tag("example.com/app:1", descriptor(1))
    assert list(layout.names()) == ["example.com/app:1"]


# -- several processes ---------------------------------------------------------------------------

PROCESSES = 4
TAGS = 12


def _tagger(root: str, state: str, number: int, start) -> None:
    layout = Layout(root, state)
    start.wait()
    for i in range(TAGS):
        layout.tag(f"example.com/p{number}:t{i}", descriptor(number * 100 + i))
        if i % 4 == 3:
            layout.untag(f"example.com/p{number}:t{i - 1}")


def test_concurrent_taggers_lose_nothing(paths):
    root, state = paths
    ctx = multiprocessing.get_context("fork")
    start = ctx.Event()
    procs = [ctx.Process(target=_tagger, args=(str(root), str(state), n, start)) for n in range(PROCESSES)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    expected = {f"example.com/p{n}:t{i}" for n in range(PROCESSES) for i in range(TAGS) if i % 4 != 2}
    names = Layout(root, state).names()
    assert set(names) == expected
    assert all(names[f"example.com/p{n}:t{i}"].digest == descriptor(n * 100 + i).digest
               for n in range(PROCESSES) for i in range(TAGS) if i % 4 != 2)
    assert not [p for p in os.listdir(root) if p.endswith(".tmp")]


def _busy_tagger(root: str, state: str, ready, stop) -> None:
    layout = Layout(root, state)
    padding = "x" * 2000  # a larger file: more chances to catch a half-written one
    ready.set()
    i = 0
    while not stop.is_set():
        layout.tag(f"example.com/busy:{i % 40}", descriptor(i, **{"org.example.padding": padding}))
        i += 1


def test_readers_always_see_whole_files(paths):
    root, state = paths
    ctx = multiprocessing.get_context("fork")
    ready, stop = ctx.Event(), ctx.Event()
    writer = ctx.Process(target=_busy_tagger, args=(str(root), str(state), ready, stop))
    writer.start()
    try:
        assert ready.wait(30)
        reader = Layout(root, state)
        reads, names = 0, 0
        deadline = time.monotonic() + 30
        while reads < 400 or names < 10:  # until the writer has been busy while we read
            index = json.loads((root / "index.json").read_bytes())  # raises on a partial file
            assert index["schemaVersion"] == 2
            names = len(reader.names())
            reads += 1
            assert time.monotonic() < deadline
    finally:
        stop.set()
        writer.join(30)
    assert writer.exitcode == 0
    assert not [p for p in os.listdir(root) if p.endswith(".tmp")]
