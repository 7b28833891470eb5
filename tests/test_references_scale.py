"""References at scale: ``index.json`` in its line form, spliced rather than rewritten
from a parse, and image summaries cached in the metadata.

What is checked: the line form is plain JSON other tools read and write; a tag, a retag
and an untag give exactly what a whole parse and rewrite gave (a model of the old code,
on random operations); a file another tool wrote (or edited) is noticed and parsed whole;
several processes tagging at once lose nothing; a tagger killed at any point leaves a
whole, usable file; skopeo and umoci write the same file and contentstore keeps what
they wrote (and the reverse); tagging stays cheap as the file grows.
"""

import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from contentstore.errors import IndexDamaged, ReferenceNotFound
from contentstore.local.layout import Layout, _name_of
from contentstore.model import digest as digests
from contentstore.model import mediatypes as mt
from contentstore.model.manifest import REF_NAME_ANNOTATION, Descriptor


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
    snapshot = layout._snapshot()
    return snapshot.lines


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
    for damaged in (b"", b"garbage", record.replace(b" 1 ", b" 0 ", 1), record[:40] + b"9" + record[41:]):
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
