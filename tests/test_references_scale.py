"""References at scale: ``index.json`` in its line form, spliced rather than rewritten
from a parse, and image summaries cached in the metadata.

What is checked: the line form is plain JSON other tools read and write; a tag, a retag
and an untag give exactly what a whole parse and rewrite gave (a model of the old code,
on random operations); a file another tool wrote (or edited) is noticed and parsed whole;
several processes tagging at once lose nothing; a tagger killed at any point leaves a
whole, usable file; skopeo and umoci write the same file and contentstore keeps what
they wrote (and the reverse); a listing from the summaries equals reading every image
afresh, through blobs deleted and added, platforms pulled later, gc labels set and
removed, damaged summaries and a damaged database; a pull records its summary; gc drops
the summaries of what it deletes; tagging stays cheap as the file grows.
"""

import json
import multiprocessing
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from contentstore import Store
from contentstore.errors import IndexDamaged, ReferenceNotFound
from contentstore.local.layout import Layout, _name_of
from contentstore.local.metadata import ORIGINAL_LABEL
from contentstore.local.ociview import ORIGINAL_DIGEST_ANNOTATION
from contentstore.model import digest as digests
from contentstore.model import mediatypes as mt
from contentstore.model.manifest import REF_NAME_ANNOTATION, Descriptor
from contentstore.model.platform import Platform
from contentstore.testing import build_image, push_test_image


def descriptor(n: int, **annotations) -> Descriptor:
    return Descriptor(mt.OCI_MANIFEST, digests.of_bytes(f"manifest {n}".encode()), 100 + n,
                      annotations=annotations)


def entry(name: str, target: Descriptor) -> dict:
    return target.with_annotations(**{REF_NAME_ANNOTATION: name}).to_json()


@pytest.fixture
def paths(tmp_path):
    root, state = tmp_path / "layout", tmp_path / "state"
    root.mkdir()
    state.mkdir()
    return root, state


@pytest.fixture
def layout(paths):
    return Layout(*paths)


def manifests(layout: Layout) -> list:
    return json.loads(layout.index_path.read_bytes())["manifests"]


def spliced(layout: Layout) -> bool:
    """Whether the next change to ``index.json`` is a splice (the file is contentstore's)."""
    return layout._snapshot().lines


# -- the line form ---------------------------------------------------------------------------------


def test_index_json_is_one_compact_entry_per_line(layout):
    layout.tag("example.com/app:1", descriptor(1))
    layout.tag("example.com/app:2", descriptor(2, **{"org.example.note": "é \" \n"}))
    lines = layout.index_path.read_bytes().split(b"\n")
    assert lines[0] == b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":['
    assert json.loads(lines[1].rstrip(b",")) == entry("example.com/app:1", descriptor(1))
    assert json.loads(lines[2]) == entry("example.com/app:2", descriptor(2, **{"org.example.note": "é \" \n"}))
    assert lines[3:] == [b"]}", b""]
    assert lines[1].endswith(b",") and not lines[2].endswith(b",")
    assert spliced(layout)


def test_an_empty_index_and_an_index_emptied_again(layout):
    assert layout.index_path.read_bytes().endswith(b'"manifests":[\n]}\n')
    layout.tag("example.com/app:1", descriptor(1))
    layout.untag("example.com/app:1")
    assert manifests(layout) == [] and layout.index_path.read_bytes().endswith(b'"manifests":[\n]}\n')
    assert layout.names() == {} and layout.get("example.com/app:1") is None


def test_random_tags_and_untags_give_what_a_whole_rewrite_gives(paths):
    """A model of the old code (parse, filter, append, dump) against the splices, with
    another tool rewriting the file now and then."""
    rng = random.Random(13)
    root, state = paths
    for trial in range(40):
        (root / "index.json").unlink(missing_ok=True)
        layout = Layout(root, state)
        model: list = []
        for step in range(30):
            name = f"example.com/app:{rng.randrange(6)}"
            roll = rng.random()
            if roll < 0.55:
                target = descriptor(rng.randrange(1000), **{"org.example.note": rng.choice(["x", name, "\n\""])})
                layout.tag(name, target)
                model = [m for m in model if _name_of(m) != name] + [entry(name, target)]
            elif roll < 0.9:
                had = [m for m in model if _name_of(m) == name]
                try:
                    assert layout.untag(name).digest == had[0]["digest"]
                except ReferenceNotFound:
                    assert not had
                model = [m for m in model if _name_of(m) != name]
            else:  # another tool writes the same entries in its own layout
                index = json.loads(layout.index_path.read_bytes())
                layout.index_path.write_text(json.dumps(index, indent=rng.choice([None, 2, "\t"])))
            assert manifests(layout) == model
            for m in model:
                assert layout.get(_name_of(m)).digest == m["digest"] == layout.resolve(_name_of(m)).digest
            assert layout.get("example.com/app:9") is None
            assert set(layout.names()) == {_name_of(m) for m in model}


def test_a_file_another_tool_wrote_is_parsed_whole_and_laid_out_again(layout):
    layout.tag("example.com/app:1", descriptor(1))
    index = json.loads(layout.index_path.read_bytes())
    index["annotations"] = {"org.example.index": "kept"}
    index["manifests"].append({**entry("example.com/app:2", descriptor(2)), "org.example.field": [1, {"a": 2}]})
    index["manifests"].append({"mediaType": mt.OCI_MANIFEST, "digest": descriptor(3).digest, "size": 103})
    layout.index_path.write_text(json.dumps(index, indent=4))
    assert not spliced(layout)
    assert set(layout.names()) == {"example.com/app:1", "example.com/app:2"}
    layout.tag("example.com/app:3", descriptor(4))
    assert spliced(layout)
    written = json.loads(layout.index_path.read_bytes())
    assert written["annotations"] == {"org.example.index": "kept"}
    assert written["manifests"] == index["manifests"] + [entry("example.com/app:3", descriptor(4))]


def test_an_edit_in_place_is_noticed(layout):
    """The same inode, another size or time: no longer the file contentstore signed."""
    layout.tag("example.com/app:1", descriptor(1))
    layout.tag("example.com/app:2", descriptor(2))
    data = layout.index_path.read_bytes()
    edited = data.replace(b'"example.com/app:2"', b'"example.com/app:22"')
    with open(layout.index_path, "r+b") as f:  # as an editor that writes in place
        f.write(edited)
    assert not spliced(layout)
    assert layout.get("example.com/app:22").digest == descriptor(2).digest
    layout.untag("example.com/app:22")
    assert set(layout.names()) == {"example.com/app:1"}


def test_a_damaged_or_missing_signature_means_a_whole_parse(paths, layout):
    root, state = paths
    layout.tag("example.com/app:1", descriptor(1))
    lock = state / "index.lock"
    record = lock.read_bytes()
    other_digit = b"8" if record[40:41] == b"9" else b"9"  # a digit there, changed (not always a 9 already)
    for damaged in (b"", b"garbage", record.replace(b" 1 ", b" 0 ", 1), record[:40] + other_digit + record[41:]):
        lock.write_bytes(damaged)
        assert not spliced(layout)
        assert layout.get("example.com/app:1").digest == descriptor(1).digest
    lock.unlink()
    layout.tag("example.com/app:2", descriptor(2))  # parsed whole, written and signed again
    assert spliced(layout) and set(layout.names()) == {"example.com/app:1", "example.com/app:2"}


def test_a_name_found_in_another_field_is_not_taken_for_the_entrys_name(layout):
    """The byte search finds candidates; each is parsed and its name annotation checked."""
    decoy = {**descriptor(7).to_json(), "org.example.field": {REF_NAME_ANNOTATION: "example.com/app:1"}}
    layout.update(lambda entries: entries.append(decoy))
    assert spliced(layout)
    assert layout.get("example.com/app:1") is None
    with pytest.raises(ReferenceNotFound):
        layout.untag("example.com/app:1")
    layout.tag("example.com/app:1", descriptor(1))
    layout.tag("example.com/app:1", descriptor(2))
    assert manifests(layout) == [decoy, entry("example.com/app:1", descriptor(2))]
    layout.untag("example.com/app:1")
    assert manifests(layout) == [decoy]


def test_duplicate_names_another_tool_left_are_resolved_as_before(layout):
    """The last entry with a name is the one it names; a tag or untag removes them all."""
    layout.update(lambda entries: entries.extend([entry("example.com/app:1", descriptor(1)),
                                                  entry("example.com/app:2", descriptor(2)),
                                                  entry("example.com/app:1", descriptor(3))]))
    assert spliced(layout)
    assert layout.get("example.com/app:1").digest == descriptor(3).digest
    assert layout.names()["example.com/app:1"].digest == descriptor(3).digest
    assert layout.untag("example.com/app:1").digest == descriptor(1).digest
    assert manifests(layout) == [entry("example.com/app:2", descriptor(2))]


def test_a_malformed_entry_still_fails_a_look_up_as_before(layout):
    """A file with an entry that is no descriptor is still written to (a tag adds its
    entry), and a look-up still says what is wrong, as a whole parse did."""
    layout.update(lambda entries: entries.append({"digest": "sha256:12", "size": 1}))
    layout.tag("example.com/app:1", descriptor(1))
    assert spliced(layout)
    with pytest.raises(IndexDamaged, match="invalid index.json entry: invalid digest"):
        layout.get("example.com/app:1")
    assert manifests(layout)[0] == {"digest": "sha256:12", "size": 1}


# -- several processes, killed processes -----------------------------------------------------------


def _tagger(root: str, state: str, number: int, rounds: int, start) -> None:
    layout = Layout(root, state)
    start.wait()
    for i in range(rounds):
        layout.tag(f"example.com/p{number}:t{i}", descriptor(number * 1000 + i))
        layout.tag(f"example.com/shared:{i % 7}", descriptor(i))   # every process retags these
        if i % 5 == 4:
            layout.untag(f"example.com/p{number}:t{i - 2}")


def test_concurrent_taggers_on_a_large_index_lose_nothing(paths):
    root, state = paths
    layout = Layout(root, state)
    layout.update(lambda entries: entries.extend(entry(f"example.com/base:{i}", descriptor(i))
                                                 for i in range(1500)))
    processes, rounds = 5, 30
    ctx = multiprocessing.get_context("fork")
    start = ctx.Event()
    procs = [ctx.Process(target=_tagger, args=(str(root), str(state), n, rounds, start)) for n in range(processes)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    names = Layout(root, state).names()
    expected = {f"example.com/base:{i}" for i in range(1500)}
    expected |= {f"example.com/p{n}:t{i}" for n in range(processes) for i in range(rounds) if i % 5 != 2}
    expected |= {f"example.com/shared:{i}" for i in range(7)}
    assert set(names) == expected
    assert all(names[f"example.com/p{n}:t{i}"].digest == descriptor(n * 1000 + i).digest
               for n in range(processes) for i in range(rounds) if i % 5 != 2)
    assert len(manifests(layout)) == len(expected)  # one entry per name
    assert not [p for p in os.listdir(root) if p.endswith(".tmp")]


KILLED_TAGGER = textwrap.dedent("""
    import sys
    from contentstore.local.layout import Layout
    from contentstore.model.manifest import Descriptor
    layout = Layout(sys.argv[1], sys.argv[2])
    target = Descriptor("application/vnd.oci.image.manifest.v1+json", "sha256:" + "ab" * 32, 5)
    print("ready", flush=True)
    i = 0
    while True:
        layout.tag(f"example.com/loop:t{i % 300}", target)
        if i % 3 == 0:
            layout.untag(f"example.com/loop:t{i % 300}")
        i += 1
""")


def test_a_tagger_killed_at_any_point_leaves_a_whole_index_with_every_other_name(paths):
    root, state = paths
    layout = Layout(root, state)
    layout.update(lambda entries: entries.extend(entry(f"example.com/base:{i}", descriptor(i))
                                                 for i in range(2000)))
    for delay in (0.02, 0.05, 0.11, 0.17, 0.23, 0.31):
        proc = subprocess.Popen([sys.executable, "-c", KILLED_TAGGER, str(root), str(state)],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        index = json.loads(layout.index_path.read_bytes())  # whole, whatever the moment
        names = [_name_of(m) for m in index["manifests"]]
        assert len(names) == len(set(names))
        assert {f"example.com/base:{i}" for i in range(2000)} <= set(names)
        layout.tag("example.com/after:1", descriptor(1))  # the lock died with its holder
        assert layout.get("example.com/after:1").digest == descriptor(1).digest
        assert set(Layout(root, state).names()) == set(names) | {"example.com/after:1"}
    assert len(layout.remove_temporary()) <= 6  # what the kills left between write and rename


# -- image summaries ---------------------------------------------------------------------------------

def shown(images) -> list[tuple]:
    """Every field of each listed image, descriptors with their annotations."""
    def described(d):
        return d.to_json() if d is not None else None
    return [(i.reference, str(i.digest), i.media_type, i.size, described(i.manifest), described(i.config),
             [described(layer) for layer in i.layers], str(i.platform) if i.platform else None) for i in images]


def read_afresh(store: Store) -> list[tuple]:
    """What listing gives when every image is read again (no summary used)."""
    return shown([store._image(name, entry, None, strict=False)
                  for name, entry in sorted(store.layout.names().items())])


@pytest.fixture
def counted(monkeypatch):
    """How many images each listing summarized again."""
    calls = []
    original = Store._summarize

    def summarize(self, entry, wanted, strict, labels=None):
        calls.append(entry.digest)
        return original(self, entry, wanted, strict, labels)

    monkeypatch.setattr(Store, "_summarize", summarize)
    return calls


def listed(store: Store, counted: list) -> tuple[list[tuple], int]:
    """List with a fresh Store (as a new process would) and compare with reading afresh."""
    counted.clear()
    result = shown(Store(store.root).images())
    summarized = len(counted)
    assert result == read_afresh(store)
    return result, summarized


def docker_typed(store: Store, name: str) -> str:
    """A schema2 manifest made locally and tagged: named through its OCI form."""
    config = store.put(json.dumps({"architecture": "arm64", "os": "linux",
                                   "rootfs": {"type": "layers", "diff_ids": []}}).encode())
    manifest = json.dumps({"schemaVersion": 2, "mediaType": mt.DOCKER_MANIFEST,
                           "config": {"mediaType": mt.DOCKER_CONFIG, "digest": config.digest, "size": config.size},
                           "layers": []}).encode()
    digest = store.put(manifest).digest
    store.tag(digest, name)
    return digest


def test_images_are_listed_from_their_summaries_as_when_read_afresh(store, counted):
    one = build_image(store, "example.com/one:1", {"a": "1"})
    store.tag("example.com/one:1", "example.com/one:2")
    store.tag("example.com/one:1", "example.com/other:latest")
    build_image(store, "example.com/two:1", {"b": "2"}, platform=("linux", "arm64", "v8"))
    original = docker_typed(store, "example.com/docker:1")
    store.tag(original, "example.com/docker:2")
    first, summarized = listed(store, counted)
    assert summarized == 3  # one summary per image, shared by its names
    again, summarized = listed(store, counted)
    assert again == first and summarized == 0
    by_name = {row[0]: row for row in first}
    assert by_name["example.com/docker:1"][1] == original  # the registry's digest
    assert by_name["example.com/docker:2"][4]["annotations"][REF_NAME_ANNOTATION] == "example.com/docker:2"
    assert by_name["example.com/one:2"][4]["annotations"] == {REF_NAME_ANNOTATION: "example.com/one:2"}
    assert by_name["example.com/one:2"][4]["digest"] == one.digest
    assert by_name["example.com/two:1"][7] == "linux/arm64/v8"


def test_a_summary_follows_the_blobs_stored(store, counted):
    """A layer deleted, a platform of an index pulled later, an image's own manifest
    gone: the listing says so at once."""
    build_image(store, "example.com/one:1", {"a": "1"})
    image = store.image("example.com/one:1")
    host = Platform.host()
    other = ("linux", "arm64", "v8") if host.architecture != "arm64" else ("linux", "amd64", None)
    children = [build_image(store, None, {"p": str(p)}, platform=p) for p in (other, (host.os, host.architecture,
                                                                                     host.variant))]
    index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [
        {**child.to_json(), "platform": {"os": p[0], "architecture": p[1], **({"variant": p[2]} if p[2] else {})}}
        for child, p in zip(children, (other, (host.os, host.architecture, host.variant)))]}
    store.tag(store.put(json.dumps(index).encode()).digest, "example.com/multi:1")
    host_child = store.image("example.com/multi:1").manifest
    listed(store, counted)

    store.content.delete(image.layers[0].digest)
    rows, summarized = listed(store, counted)
    assert summarized == 1
    assert {r[0]: r for r in rows}["example.com/one:1"][3] == image.config.size + store.resolve("example.com/one:1").size

    saved = store.content.read(host_child.digest)
    store.content.delete(host_child.digest)  # the host's platform not pulled: the other one is listed
    rows, summarized = listed(store, counted)
    assert summarized == 1 and {r[0]: r for r in rows}["example.com/multi:1"][4]["digest"] == children[0].digest
    store.put(saved)                          # pulled after all: the host's is listed again
    rows, summarized = listed(store, counted)
    assert summarized == 1 and {r[0]: r for r in rows}["example.com/multi:1"][4]["digest"] == host_child.digest

    store.content.delete(store.resolve("example.com/one:1").digest)
    rows, summarized = listed(store, counted)
    assert summarized == 1 and {r[0]: r for r in rows}["example.com/one:1"][4] is None


def test_a_summary_follows_the_gc_labels(store, counted):
    build_image(store, "example.com/one:1", {"a": "1"})
    entry = store.resolve("example.com/one:1")
    extra = store.put(b"x" * 1000).digest
    before, _ = listed(store, counted)
    store.set_label(entry.digest, "contentstore.gc.ref.extra", extra)
    rows, summarized = listed(store, counted)
    assert summarized == 1 and rows[0][3] == before[0][3] + 1000
    store.set_label(entry.digest, "contentstore.gc.ref.extra", None)
    rows, summarized = listed(store, counted)
    assert summarized == 1 and rows == before
    # a converted image whose original's label goes: listed by its OCI form's own digest
    original = docker_typed(store, "example.com/docker:1")
    converted = store.resolve("example.com/docker:1").digest
    listed(store, counted)
    store.set_label(converted, ORIGINAL_LABEL, None)
    rows, summarized = listed(store, counted)
    assert summarized == 1 and {r[0]: r for r in rows}["example.com/docker:1"][4]["digest"] == converted
    assert {r[0]: r for r in rows}["example.com/docker:1"][1] == original  # the entry still names it


def test_another_entry_for_the_same_image_has_its_own_summary(store, counted):
    """Entries of one digest that differ in more than the name (another tool's platform
    field, a registry digest) are not listed from each other's summary."""
    desc = build_image(store, "example.com/one:1", {"a": "1"})
    store.layout.tag("example.com/plat:1", Descriptor(desc.media_type, desc.digest, desc.size,
                                                      Platform("linux", "riscv64")))
    store.layout.tag("example.com/known:1", desc.with_annotations(**{ORIGINAL_DIGEST_ANNOTATION: "sha256:" + "1" * 64}))
    rows, summarized = listed(store, counted)
    assert summarized == 3
    by_name = {row[0]: row for row in rows}
    assert by_name["example.com/plat:1"][7] == "linux/riscv64" and by_name["example.com/one:1"][7] == "linux/amd64"
    assert by_name["example.com/known:1"][1] == "sha256:" + "1" * 64


def test_a_damaged_summary_or_metadata_is_listed_afresh(store, counted):
    build_image(store, "example.com/one:1", {"a": "1"})
    first, _ = listed(store, counted)
    db = sqlite3.connect(store.metadata.path)
    db.execute("UPDATE image_summary SET summary = '{\"not\": \"a summary\"}'")
    db.commit()
    db.close()
    rows, summarized = listed(store, counted)
    assert rows == first and summarized == 1
    store.metadata.path.write_bytes(b"garbage" * 100)
    assert shown(Store(store.root).images()) == first  # as before: what needs no metadata still works


def test_gc_drops_the_summaries_of_what_it_deletes(store, counted):
    build_image(store, "example.com/one:1", {"a": "1"})
    build_image(store, "example.com/two:1", {"b": "2"})
    listed(store, counted)
    two = store.resolve("example.com/two:1").digest
    assert {digest for digest, _ in store.metadata.summaries()} == {store.resolve("example.com/one:1").digest, two}
    store.untag("example.com/two:1")
    store.gc()
    assert {digest for digest, _ in store.metadata.summaries()} == {store.resolve("example.com/one:1").digest}


@pytest.mark.needs("skopeo", "docker-registry")
def test_a_pull_records_the_summary_so_the_first_listing_reads_nothing(store, registry, counted):
    ref = push_test_image(registry, "refs/pulled:1", {"hello.txt": "pulled\n"}, "--format", "v2s2")
    store.pull(ref)
    assert len(counted) == 1
    rows, summarized = listed(store, counted)
    assert summarized == 0 and len(rows) == 2  # the tag and repo@digest
    counted.clear()
    store.pull(ref)                            # warm: the summary holds, nothing made again
    assert counted == []


# -- other tools write the same index.json ----------------------------------------------------------


def run(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


@pytest.mark.needs("skopeo", "umoci")
def test_skopeo_and_umoci_write_the_index_and_contentstore_keeps_what_they_wrote(store, tmp_path):
    for i in range(30):
        build_image(store, f"example.com/app:{i}", {"n": str(i)})
    one = store.resolve("example.com/app:1")
    assert spliced(store.layout)
    # skopeo copies an image into the store under a name of its own: one line, compact
    run("skopeo", "copy", "--quiet", f"oci:{store.root}:example.com/app:1", f"oci:{store.root}:skopeo-made")
    assert not spliced(store.layout)
    assert store.resolve("skopeo-made").digest == one.digest
    assert store.image("skopeo-made").layers == store.image("example.com/app:1").layers
    # umoci names another one
    run("umoci", "tag", "--image", f"{store.root}:example.com/app:2", "umoci-made")
    assert store.resolve("umoci-made").digest == store.resolve("example.com/app:2").digest
    # contentstore writes again: every name kept, the file laid out again, splices from then on
    store.tag("umoci-made", "example.com/after:1")
    store.untag("example.com/app:3")
    assert spliced(store.layout)
    names = set(store.references())
    assert {"skopeo-made", "umoci-made", "example.com/after:1"} <= names and "example.com/app:3" not in names
    assert len(names) == 32
    # and the tools read what contentstore wrote
    assert json.loads(run("skopeo", "inspect", f"oci:{store.root}:example.com/after:1"))["Digest"] == \
        store.resolve("example.com/app:2").digest
    listed = run("umoci", "ls", "--layout", str(store.root)).split()
    assert set(listed) == names
    # skopeo replaces a name contentstore made, in the middle of the file
    run("skopeo", "copy", "--quiet", f"oci:{store.root}:example.com/app:5", f"oci:{store.root}:example.com/app:7")
    assert store.resolve("example.com/app:7").digest == store.resolve("example.com/app:5").digest
    store.tag("example.com/app:9", "example.com/app:8")
    assert store.resolve("example.com/app:7").digest == store.resolve("example.com/app:5").digest
    assert [m for m in manifests(store.layout) if _name_of(m) == "example.com/app:7"][0]["digest"] == \
        store.resolve("example.com/app:5").digest
    assert set(store.references()) == names
    assert {i.reference for i in store.images()} == names and store.verify().ok


# -- at scale ----------------------------------------------------------------------------------------


def test_tagging_stays_cheap_as_the_index_grows(store):
    """2,000 tags through the API: each stays far below what parsing and rewriting the
    whole file cost (about 30 ms at 2,000 entries here), and the last ones are not much
    slower than the first (the file grows; only bytes are copied)."""
    build_image(store, "example.com/base:1", {"a": "1"})
    times = []
    for i in range(2000):
        start = time.perf_counter()
        store.tag("example.com/base:1", f"127.0.0.1:5000/team/app{i % 20}:tag-{i}")
        times.append(time.perf_counter() - start)
    first, last = sorted(times[:200])[100], sorted(times[-200:])[100]
    assert last < 0.025, (first, last)
    assert last < 4 * first + 0.002, (first, last)
    start = time.perf_counter()
    images = store.images()
    assert len(images) == 2001 and time.perf_counter() - start < 10
    start = time.perf_counter()
    assert len(Store(store.root).images()) == 2001
    assert time.perf_counter() - start < 2  # from the summary: about 40 ms here
