"""OCI 1.1 artifacts and referrers against real registries.

Debian's docker-registry (distribution 2.8) has no referrers API: it answers 404, so
everything here that talks to it goes the fallback way, through the referrers tag
schema, which push keeps up to date; skopeo (``inspect --raw docker://``) says what the
registry holds. The referrers API itself is tested against the fault proxy's
:class:`ReferrersAPI`: a small spec-following endpoint the proxy answers around the real
registry (no packaged registry implements the API), with paging and
``OCI-Filters-Applied``.
"""

import hashlib
import json
import os
import subprocess
import sys
import threading

import pytest
import requests

from contentstore import Store
from contentstore.errors import InvalidArtifact
from contentstore.model import artifact
from contentstore.model import mediatypes as mt
from contentstore.remote.client import RegistryClient
from contentstore.testing import ProgressRecorder, build_image

pytestmark = pytest.mark.needs("skopeo", "docker-registry")

SBOM = "application/vnd.example.sbom.v1"
SIG = "application/vnd.example.signature.v1"


def raw_remote(ref: str) -> bytes:
    return subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
                          check=True, capture_output=True).stdout


def fallback_index(host: str, repository: str, subject: str) -> dict:
    """What the registry holds under the referrers tag of ``subject``, read by skopeo."""
    return json.loads(raw_remote(f"{host}/{repository}:{artifact.referrers_tag(subject)}"))


def has_tag(host: str, repository: str, tag: str) -> bool:
    listed = requests.get(f"http://{host}/v2/{repository}/tags/list", timeout=10)
    return listed.status_code == 200 and tag in (listed.json().get("tags") or [])


def files(tmp_path, **contents) -> dict:
    paths = {}
    for name, data in contents.items():
        path = tmp_path / "files" / name.replace("_", ".")
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        paths[name] = path
    return paths


@pytest.fixture
def signed(registry, tmp_path):
    """An image on the registry with an SBOM and a signature attached (two artifact types),
    and a signature of the SBOM, all pushed from a store: the fallback path."""
    repository = f"team/signed-{os.urandom(4).hex()}"
    store = Store(tmp_path / "publisher")
    ref = f"{registry.host}/{repository}:1"
    build_image(store, ref, {"app.txt": "the app\n"})
    image = store.push(ref)
    paths = files(tmp_path, sbom_json=b'{"packages": []}\n', sig_txt=b"signature of the image\n",
                  sbom_sig=b"signature of the sbom\n")
    sbom = store.put_artifact(f"{registry.host}/{repository}:sbom", [(paths["sbom_json"], "application/spdx+json")],
                              artifact_type=SBOM, subject=ref, annotations={"org.example.format": "spdx"})
    sig = store.put_artifact(f"{registry.host}/{repository}:sig", [paths["sig_txt"]], artifact_type=SIG,
                             subject=ref)
    sbom_sig = store.put_artifact(f"{registry.host}/{repository}:sbom-sig", [paths["sbom_sig"]],
                                  artifact_type=SIG, subject=f"{registry.host}/{repository}:sbom")
    for tag in ("sbom", "sig", "sbom-sig"):
        store.push(f"{registry.host}/{repository}:{tag}")
    return {"store": store, "repository": repository, "ref": ref, "image": image.digest, "sbom": sbom,
            "sig": sig, "sbom_sig": sbom_sig, "paths": paths}


def test_push_keeps_the_referrers_tag_of_a_registry_without_the_api(registry, signed):
    host, repository = registry.host, signed["repository"]
    # distribution 2.8 has no referrers API
    answer = requests.get(f"http://{host}/v2/{repository}/referrers/{signed['image']}", timeout=10)
    assert answer.status_code == 404
    index = fallback_index(host, repository, signed["image"])
    assert index["mediaType"] == mt.OCI_INDEX
    assert {(m["digest"], m["artifactType"]) for m in index["manifests"]} == {
        (signed["sbom"].digest, SBOM), (signed["sig"].digest, SIG)}
    [sbom_entry] = [m for m in index["manifests"] if m["artifactType"] == SBOM]
    assert sbom_entry["annotations"] == {"org.example.format": "spdx"} and sbom_entry["size"] == signed["sbom"].size
    assert [m["digest"] for m in fallback_index(host, repository, signed["sbom"].digest)["manifests"]] == \
        [signed["sbom_sig"].digest]
    # the registry holds the artifacts byte for byte: digests kept
    sbom_raw = raw_remote(f"{host}/{repository}@{signed['sbom'].digest}")
    assert "sha256:" + hashlib.sha256(sbom_raw).hexdigest() == signed["sbom"].digest
    body = json.loads(sbom_raw)
    assert body["artifactType"] == SBOM and body["config"]["mediaType"] == mt.OCI_EMPTY
    assert body["subject"] == {"mediaType": mt.OCI_MANIFEST, "digest": signed["image"],
                               "size": len(raw_remote(signed["ref"]))}
    # pushing again adds nothing twice
    signed["store"].push(f"{host}/{repository}:sbom")
    assert len(fallback_index(host, repository, signed["image"])["manifests"]) == 2


def test_list_referrers_with_and_without_a_filter(registry, signed, tmp_path):
    store = Store(tmp_path / "reader")
    listed = store.referrers(signed["ref"])
    assert listed.source == f"tag {artifact.referrers_tag(signed['image'])}" and listed.subject == signed["image"]
    assert {r.digest for r in listed} == {signed["sbom"].digest, signed["sig"].digest}
    assert [r.digest for r in store.referrers(signed["ref"], artifact_type=SIG)] == [signed["sig"].digest]
    assert store.referrers(signed["ref"], artifact_type="application/vnd.none") == []
    by_digest = f"{registry.host}/{signed['repository']}@{signed['sbom'].digest}"
    assert [r.digest for r in store.referrers(by_digest)] == [signed["sbom_sig"].digest]
    # the publisher's store lists what it holds, without the registry
    local = signed["store"].referrers(signed["ref"], remote=False)
    assert local.source == "store" and {r.digest for r in local} == {signed["sbom"].digest, signed["sig"].digest}


def test_pull_with_referrers_then_gc_keeps_and_drops_them(registry, signed, tmp_path):
    store = Store(tmp_path / "fresh")
    events = ProgressRecorder()
    image = store.pull(signed["ref"], referrers=True, progress=events)
    assert image.digest == signed["image"]
    for name in ("sbom", "sig", "sbom_sig"):
        assert store.exists(signed[name].digest)
        assert any(line.startswith(f"Referrer {signed[name].digest} ") for line in events)
    assert events[-1] == f"Referrers: 3 of {signed['image']}"
    assert {r.digest for r in store.referrers(signed["ref"], remote=False)} == {signed["sbom"].digest,
                                                                                 signed["sig"].digest}
    info = store.inspect(signed["ref"])
    assert {r["digest"] for r in info["referrers"]} == {signed["sbom"].digest, signed["sig"].digest}
    sbom_info = store.inspect(signed["sbom"].digest)
    assert sbom_info["artifactType"] == SBOM and sbom_info["subject"]["digest"] == signed["image"]
    # referrers are not named: the image alone is
    assert sorted(store.references()) == sorted([f"{registry.host}/{signed['repository']}@{signed['image']}",
                                                 signed["ref"]])
    kept = {b.digest for b in store.blobs()}
    assert store.gc().removed == [] and {b.digest for b in store.blobs()} == kept
    store.untag(signed["ref"])
    store.gc()
    assert store.blobs() == []

    again = ProgressRecorder()
    store.pull(signed["ref"], referrers=True, progress=again)
    assert all(store.exists(signed[name].digest) for name in ("sbom", "sig", "sbom_sig"))


def test_copy_with_referrers_keeps_digests(registry, registry_factory, signed, tmp_path):
    other = registry_factory()
    store = Store(tmp_path / "copier")
    result = store.copy(signed["ref"], f"{other.host}/copied/app:1", referrers=True)
    assert result.digest == signed["image"] and result.referrers == 3
    assert raw_remote(f"{other.host}/copied/app:1") == raw_remote(signed["ref"])
    for name in ("sbom", "sig", "sbom_sig"):
        digest = signed[name].digest
        assert raw_remote(f"{other.host}/copied/app@{digest}") == raw_remote(
            f"{registry.host}/{signed['repository']}@{digest}")
    assert {m["digest"] for m in fallback_index(other.host, "copied/app", signed["image"])["manifests"]} == \
        {signed["sbom"].digest, signed["sig"].digest}
    assert [m["digest"] for m in fallback_index(other.host, "copied/app", signed["sbom"].digest)["manifests"]] \
        == [signed["sbom_sig"].digest]
    # push --referrers from a store that holds them, to a third registry
    third = registry_factory()
    store.push(signed["ref"], f"{third.host}/pushed/app:1", referrers=True)
    assert len(fallback_index(third.host, "pushed/app", signed["image"])["manifests"]) == 2


def test_artifact_get_writes_identical_files(registry, signed, tmp_path):
    store = Store(tmp_path / "getter")
    written = store.get_artifact(f"{registry.host}/{signed['repository']}:sbom", tmp_path / "out")
    assert written.files == [tmp_path / "out" / "sbom.json"]
    assert (tmp_path / "out" / "sbom.json").read_bytes() == signed["paths"]["sbom_json"].read_bytes()
    assert store.image(f"{registry.host}/{signed['repository']}:sbom").artifact_type == SBOM
    # plain pull keeps Docker's rule: not an image, no plugin accepts it
    with pytest.raises(Exception, match="which is not an image"):
        Store(tmp_path / "puller").pull(f"{registry.host}/{signed['repository']}:sig")


def test_subject_found_on_the_registry_with_a_head(registry, proxy_factory, signed, tmp_path):
    proxy = proxy_factory(registry.url)
    store = Store(tmp_path / "empty")
    paths = files(tmp_path, note_txt=b"a note\n")
    put = store.put_artifact(f"{proxy.host}/{signed['repository']}:note", [paths["note_txt"]],
                             subject=f"{proxy.host}/{signed['repository']}:1")
    subject = json.loads(store.content.read(put.digest))["subject"]
    assert subject == {"mediaType": mt.OCI_MANIFEST, "digest": signed["image"],
                       "size": len(raw_remote(signed["ref"]))}
    asked = proxy.requests(f"/v2/{signed['repository']}/manifests/")
    assert [e["method"] for e in asked] == ["HEAD"]
    assert store.metadata.referrers(signed["image"])[0].artifact_type == artifact.DEFAULT_ARTIFACT_TYPE


def test_two_pushers_racing_keep_both_referrers(registry, tmp_path, monkeypatch):
    """Both pushers read the (absent) referrers tag before either writes it: the later
    write drops the other's referrer, and the read after each write puts it back."""
    publisher = Store(tmp_path / "publisher")
    ref = f"{registry.host}/team/race:1"
    build_image(publisher, ref)
    subject = publisher.push(ref).digest
    # the empty config both artifacts share is on the registry before they race: two
    # uploads of one blob at once trip distribution 2.8 itself (a link file read half
    # written: "provided digest did not match uploaded content"), which is not the race here
    publisher.put_artifact(f"{registry.host}/team/race:empty", [])
    publisher.push(f"{registry.host}/team/race:empty")
    tag = artifact.referrers_tag(subject)
    barrier = threading.Barrier(2, timeout=30)
    first_write: set[int] = set()
    put_manifest = RegistryClient.put_manifest

    writes = []

    def racing_put(self, repository, reference, data, media_type, scope):
        if reference == tag:
            writes.append(reference)
            if threading.get_ident() not in first_write:
                first_write.add(threading.get_ident())
                barrier.wait()  # both have read the tag; now both write
        return put_manifest(self, repository, reference, data, media_type, scope)

    monkeypatch.setattr(RegistryClient, "put_manifest", racing_put)
    pushed, errors = {}, []

    def attach(name: str) -> None:
        try:
            store = Store(tmp_path / name)
            path = tmp_path / f"{name}.txt"
            path.write_text(name)
            store.pull(ref)
            pushed[name] = store.put_artifact(f"{registry.host}/team/race:{name}", [path],
                                              artifact_type=f"application/vnd.example.{name}", subject=ref).digest
            store.push(f"{registry.host}/team/race:{name}")
        except Exception as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=attach, args=(name,)) for name in ("one", "two")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(first_write) == 2
    assert len(writes) == 3  # the second write dropped the first's referrer; a re-read put it back
    listed = {m["digest"] for m in fallback_index(registry.host, "team/race", subject)["manifests"]}
    assert listed == set(pushed.values())


# -- bad input ---------------------------------------------------------------------------------------


def test_a_referrers_tag_that_is_no_index(registry, tmp_path):
    store = Store(tmp_path / "store")
    ref = f"{registry.host}/team/badtag:1"
    build_image(store, ref)
    subject = store.push(ref).digest
    # another image pushed under the referrers tag: a manifest, not an index
    build_image(store, f"{registry.host}/team/badtag:{artifact.referrers_tag(subject)}", {"x": "not an index"})
    store.push(f"{registry.host}/team/badtag:{artifact.referrers_tag(subject)}")
    listed = store.referrers(ref)
    assert listed == [] and len(listed.warnings) == 1
    assert "holds a application/vnd.oci.image.manifest.v1+json, not an OCI image index" in listed.warnings[0]
    events = ProgressRecorder()
    Store(tmp_path / "other").pull(ref, referrers=True, progress=events)
    assert any(line.startswith("warning: ") and "not an OCI image index" in line for line in events)
    # pushing a referrer must not write over it
    path = tmp_path / "f.txt"
    path.write_text("f")
    store.put_artifact(f"{registry.host}/team/badtag:sig", [path], subject=ref)
    with pytest.raises(InvalidArtifact, match="not an OCI image index"):
        store.push(f"{registry.host}/team/badtag:sig")
    assert json.loads(raw_remote(f"{registry.host}/team/badtag:{artifact.referrers_tag(subject)}"))[
        "mediaType"] == mt.OCI_MANIFEST


def test_garbage_from_the_registry_is_never_stored(registry, proxy_factory, signed, tmp_path):
    proxy = proxy_factory(registry.url)
    ref = f"{proxy.host}/{signed['repository']}:1"
    tag = artifact.referrers_tag(signed["image"])
    store = Store(tmp_path / "store")
    # the fallback tag answers garbage: no referrers, a warning
    proxy.faults({"match": f"GET /v2/{signed['repository']}/manifests/{tag}", "times": -1,
                  "reply": {"status": 200, "body": "garbage{", "headers": {"Content-Type": mt.OCI_INDEX}}})
    listed = store.referrers(ref)
    assert listed == [] and "not JSON" in listed.warnings[0]
    # a referrers API that answers something other than an index: an error, one line
    proxy.faults({"match": f"GET /v2/{signed['repository']}/referrers/", "times": -1,
                  "reply": {"status": 200, "body": json.dumps({"schemaVersion": 2, "manifests": "x"}),
                            "headers": {"Content-Type": mt.OCI_INDEX}}})
    with pytest.raises(InvalidArtifact, match="not a referrers index"):
        store.referrers(ref)
    # a listed referrer whose bytes are not its digest: refused, nothing stored
    other_bytes = json.dumps(json.loads(raw_remote(f"{registry.host}/{signed['repository']}@{signed['sig'].digest}")))
    proxy.faults({"match": f"GET /v2/{signed['repository']}/manifests/{signed['sig'].digest}", "times": -1,
                  "reply": {"status": 200, "body": other_bytes, "headers": {"Content-Type": mt.OCI_MANIFEST}}})
    with pytest.raises(Exception, match="digest mismatch"):
        store.pull(ref, referrers=True)
    assert not store.exists(signed["sig"].digest)
    # a listed "referrer" whose subject is another manifest: skipped, not stored
    sbom_sig = signed["store"].manifest(signed["sbom_sig"])  # its subject is the SBOM, not the image
    lying = artifact.referrers_index([artifact.referrer_descriptor(signed["sbom_sig"], sbom_sig)])
    proxy.faults({"match": f"GET /v2/{signed['repository']}/manifests/{tag}", "times": -1,
                  "reply": {"status": 200, "body": lying.decode(), "headers": {"Content-Type": mt.OCI_INDEX}}})
    events = ProgressRecorder()
    fresh = Store(tmp_path / "fresh")
    fresh.pull(ref, referrers=True, progress=events)
    assert not fresh.exists(signed["sbom_sig"].digest)
    assert any(f"referrer {signed['sbom_sig'].digest} of {signed['image']} names the subject "
               f"{signed['sbom'].digest}: skipped" in line for line in events)


# -- the referrers API (a spec-following endpoint in the fault proxy) -------------------------------------


def api(proxy, **settings) -> None:
    requests.post(f"{proxy.url}/__referrers__", data=json.dumps({"enabled": True, **settings}),
                  timeout=10).raise_for_status()


def test_referrers_api_paging_and_filter(registry, proxy_factory, tmp_path):
    proxy = proxy_factory(registry.url)
    api(proxy, page_size=2)
    store = Store(tmp_path / "store")
    ref = f"{proxy.host}/team/api:1"
    build_image(store, ref)
    subject = store.push(ref).digest
    digests = []
    for number, kind in enumerate([SBOM, SIG, SBOM, SIG, SBOM]):
        path = tmp_path / f"{number}.txt"
        path.write_text(str(number))
        digests.append(store.put_artifact(f"{proxy.host}/team/api:a{number}", [path], artifact_type=kind,
                                          subject=ref).digest)
        events = ProgressRecorder()
        store.push(f"{proxy.host}/team/api:a{number}", progress=events)
        assert not any("referrers tag" in line for line in events)  # the API did the work
    # the registry acknowledged each with OCI-Subject: no referrers tag was read or written
    assert not has_tag(registry.host, "team/api", artifact.referrers_tag(subject))
    assert not proxy.requests(artifact.referrers_tag(subject))

    listed = Store(tmp_path / "reader").referrers(ref)
    assert listed.source == "the referrers API" and [r.digest for r in listed] == digests
    pages = proxy.requests(f"/v2/team/api/referrers/{subject}", "GET")
    assert len(pages) == 3  # 2 + 2 + 1, through Link
    sboms = Store(tmp_path / "reader").referrers(ref, artifact_type=SBOM)
    assert [r.digest for r in sboms] == digests[0::2]
    filtered = proxy.requests(f"/v2/team/api/referrers/{subject}", "GET")[len(pages):]
    assert len(filtered) == 2  # 2 + 1: the registry filtered (OCI-Filters-Applied)
    assert all("artifactType=application%2Fvnd.example.sbom.v1" in e["path"] for e in filtered)

    # a registry that ignores the filter (no OCI-Filters-Applied): the client filters
    api(proxy, page_size=2, filter=False)
    assert [r.digest for r in Store(tmp_path / "reader").referrers(ref, artifact_type=SIG)] == digests[1::2]

    # pull --referrers through the API
    fresh = Store(tmp_path / "fresh")
    fresh.pull(ref, referrers=True)
    assert all(fresh.exists(d) for d in digests)
    assert [r.digest for r in fresh.referrers(ref, remote=False)] == digests


# -- the command line ------------------------------------------------------------------------------------


def cli(root, *args, expect=0, cwd=None):
    proc = subprocess.run([sys.executable, "-m", "contentstore", "--root", str(root), *args],
                          capture_output=True, text=True, cwd=cwd)
    assert proc.returncode == expect, (proc.stdout, proc.stderr)
    return proc


def test_cli_artifacts_and_referrers(registry, tmp_path):
    root = tmp_path / "store"
    ref = f"{registry.host}/team/cli-art:1"
    build_image(Store(root), ref)
    cli(root, "push", ref)
    paths = files(tmp_path, report_json=b'{"ok": true}\n', notes_txt=b"notes\n")
    out = cli(root, "artifact", "put", f"{registry.host}/team/cli-art:report",
              f"{paths['report_json']}:application/json", str(paths["notes_txt"]),
              "--artifact-type", SBOM, "--subject", ref, "--annotation", "a=1", "--annotation", "b=x=y")
    digest = out.stdout.strip()
    manifest = json.loads(Store(root).content.read(digest))
    assert [(layer["annotations"][artifact.TITLE_ANNOTATION], layer["mediaType"]) for layer in manifest["layers"]] \
        == [("report.json", "application/json"), ("notes.txt", artifact.DEFAULT_FILE_TYPE)]
    assert manifest["annotations"] == {"a": "1", "b": "x=y"}
    cli(root, "push", f"{registry.host}/team/cli-art:report")

    table = cli(root, "referrers", ref).stdout.splitlines()
    assert table[0].split() == ["DIGEST", "ARTIFACT", "TYPE", "SIZE", "ANNOTATIONS"]
    assert table[1].split()[:2] == [digest, SBOM] and table[1].split()[-1] == "a=1,b=x=y"
    as_json = json.loads(cli(root, "referrers", ref, "--format", "json").stdout)
    assert as_json["mediaType"] == mt.OCI_INDEX and [m["digest"] for m in as_json["manifests"]] == [digest]
    assert len(cli(root, "referrers", ref, "--artifact-type", SIG).stdout.splitlines()) == 1  # the header
    assert digest in cli(root, "referrers", "--local", ref).stdout

    images = cli(root, "images").stdout.splitlines()
    assert images[0].split() == ["REFERENCE", "DIGEST", "SIZE", "TYPE"]
    kinds = {line.split()[0]: line.split()[-1] for line in images[1:]}
    assert kinds[f"{registry.host}/team/cli-art:report"] == SBOM and kinds[ref] == "image"
    info = json.loads(cli(root, "inspect", ref).stdout)
    assert [r["digest"] for r in info["referrers"]] == [digest]

    other = tmp_path / "other"
    out = cli(other, "artifact", "get", f"{registry.host}/team/cli-art:report", "-o", str(tmp_path / "got"))
    assert out.stdout.splitlines()[-2:] == [str(tmp_path / "got" / "report.json"), str(tmp_path / "got" / "notes.txt")]
    assert (tmp_path / "got" / "report.json").read_bytes() == paths["report_json"].read_bytes()
    work = tmp_path / "cwd"
    work.mkdir()
    cli(other, "-q", "artifact", "get", "--local", f"{registry.host}/team/cli-art:report", cwd=work)
    assert sorted(os.listdir(work)) == ["notes.txt", "report.json"]

    # bad input: one line each
    err = cli(root, "artifact", "put", "x/y:1", str(paths["notes_txt"]), "--artifact-type", "nonsense",
              expect=1).stderr
    assert err == "contentstore: error: invalid artifact type 'nonsense': expected type/subtype (RFC 6838)\n"
    cli(root, "artifact", "put", "x/y:1", "--annotation", "novalue", expect=2)
    err = cli(root, "artifact", "put", "x/y:1", str(paths["notes_txt"]), str(paths["notes_txt"]), expect=1).stderr
    assert err == "contentstore: error: two files are titled 'notes.txt': an artifact's files need distinct names\n"
    evil = Store(root)
    blob = evil.put(b"evil")
    evil.put(artifact.EMPTY_CONFIG)
    raw = artifact.artifact_manifest([artifact.Descriptor(artifact.DEFAULT_FILE_TYPE, blob.digest, blob.size, None,
                                                          {artifact.TITLE_ANNOTATION: "../escape"})])
    evil.tag(evil.put(raw).digest, "example.com/evil:1")
    err = cli(root, "artifact", "get", "--local", "example.com/evil:1", "-o", str(tmp_path / "safe"), expect=1).stderr
    assert err == "contentstore: error: refusing file title '../escape': it must be a plain file name\n"
    assert not (tmp_path / "escape").exists() and not (tmp_path / "safe").exists()
