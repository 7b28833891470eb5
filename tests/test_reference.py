import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contentstore import Reference
from contentstore.errors import InvalidReference

HEX = "a" * 64


@pytest.mark.parametrize("text, registry, repository, tag, digest", [
    ("alpine", "docker.io", "library/alpine", "latest", None),
    ("alpine:3.19", "docker.io", "library/alpine", "3.19", None),
    ("library/alpine", "docker.io", "library/alpine", "latest", None),
    ("user/app", "docker.io", "user/app", "latest", None),
    ("index.docker.io/user/app:v1", "docker.io", "user/app", "v1", None),
    ("docker.io/alpine", "docker.io", "library/alpine", "latest", None),
    ("localhost/app", "localhost", "app", "latest", None),
    ("localhost:5000/a/b:tag", "localhost:5000", "a/b", "tag", None),
    ("127.0.0.1:5000/team/app:1.0", "127.0.0.1:5000", "team/app", "1.0", None),
    ("Registry.Example.com/app", "Registry.Example.com", "app", "latest", None),
    ("[::1]:5000/app:V1", "[::1]:5000", "app", "V1", None),
    (f"alpine@sha256:{HEX}", "docker.io", "library/alpine", None, f"sha256:{HEX}"),
    (f"ghcr.io/o/r:t@sha256:{HEX}", "ghcr.io", "o/r", "t", f"sha256:{HEX}"),
    ("a/b-c__d.e/f---g", "docker.io", "a/b-c__d.e/f---g", "latest", None),
])
def test_docker_normalization(text, registry, repository, tag, digest):
    ref = Reference.parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag, digest)


def test_length_limit_is_on_the_repository_path():
    """distribution/reference: 255 characters of path, the domain not counted."""
    domain = "registry." + "x" * 60 + ".example.com:5000"
    path = "team/" + "a" * 250
    assert len(path) == 255
    assert Reference.parse(f"{domain}/{path}:1").repository == path
    with pytest.raises(InvalidReference, match="255"):
        Reference.parse(f"{domain}/{path}b:1")
    # Docker Hub's official images count their implied library/ prefix
    assert Reference.parse("a" * 247).repository == "library/" + "a" * 247
    with pytest.raises(InvalidReference, match="255"):
        Reference.parse("a" * 248)
    # tag and digest are not part of the name
    assert Reference.parse(f"{path}:{'t' * 128}@sha256:{HEX}").repository == path


def test_str_and_familiar_name():
    assert str(Reference.parse("alpine")) == "docker.io/library/alpine:latest"
    assert Reference.parse("alpine").familiar_name == "alpine"
    assert Reference.parse("user/app").familiar_name == "user/app"
    assert Reference.parse("quay.io/a/b").familiar_name == "quay.io/a/b"
    assert Reference.parse("alpine", default_tag=None).tag is None
    # Docker's grammar reads an upper-case first component as a registry
    assert Reference.parse("UPPER/case").registry == "UPPER"
    assert Reference.parse("docker.io/my.org/app").familiar_name == "docker.io/my.org/app"


@pytest.mark.parametrize("text", [
    "", "Alpine", "a:b:c", "a/", "/a", "a//b", "a@sha256:short", f"a@md5:{HEX}",
    f"a@sha256:{HEX.upper()}", HEX, "a:" + "t" * 129, "-a", "a-", "a..b", "host:port/x",
    "a/" + "b" * 255, "a b", "a:tag with space",
])
def test_invalid_references(text):
    with pytest.raises(InvalidReference) as info:
        Reference.parse(text)
    assert isinstance(info.value, ValueError) and "\n" not in str(info.value)


# -- properties ------------------------------------------------------------------------

component = st.from_regex(r"\A[a-z0-9]{1,6}(?:(?:[._]|__|-{1,3})[a-z0-9]{1,6}){0,2}\Z")
host_label = st.from_regex(r"\A[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?\Z")
registry = st.one_of(
    st.just("docker.io"),
    st.just("localhost"),
    st.builds(lambda a, b: f"{a}.{b}", host_label, host_label),
    st.builds(lambda a, p: f"{a}:{p}", host_label, st.integers(1, 65535)),
    st.builds(lambda a, b, p: f"{a}.{b}:{p}", host_label, host_label, st.integers(1, 65535)),
)
tag = st.from_regex(r"\A[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}\Z")
digest = st.builds(lambda h: f"sha256:{h}", st.from_regex(r"\A[0-9a-f]{64}\Z"))


@st.composite
def references(draw):
    reg = draw(registry)
    parts = draw(st.lists(component, min_size=1, max_size=3))
    if reg == "docker.io" and len(parts) == 1:
        parts = ["library", *parts]
    text = f"{reg}/{'/'.join(parts)}"
    the_tag = draw(st.one_of(st.none(), tag))
    the_digest = draw(st.one_of(st.none(), digest))
    if the_tag:
        text += f":{the_tag}"
    if the_digest:
        text += f"@{the_digest}"
    return text, reg, "/".join(parts), the_tag, the_digest


@settings(max_examples=300)
@given(references())
def test_canonical_references_round_trip(case):
    text, reg, repo, the_tag, the_digest = case
    ref = Reference.parse(text)
    assert ref.registry == reg and ref.repository == repo
    assert ref.digest == the_digest
    assert ref.tag == (the_tag if the_tag or the_digest else "latest")
    assert str(ref) == (text if the_tag or the_digest else f"{text}:latest")
    assert Reference.parse(str(ref)) == ref


@settings(max_examples=300)
@given(references())
def test_familiar_names_normalize_to_the_same_reference(case):
    text = case[0]
    ref = Reference.parse(text)
    familiar = ref.familiar_name + (f":{ref.tag}" if ref.tag else "") + (f"@{ref.digest}" if ref.digest else "")
    assert Reference.parse(familiar) == ref


@settings(max_examples=500)
@given(st.text(max_size=80))
def test_arbitrary_text_parses_or_raises_invalid_reference(text):
    try:
        ref = Reference.parse(text)
    except InvalidReference:
        return
    assert Reference.parse(str(ref)) == ref
    assert ".." not in ref.repository and not ref.repository.startswith("/")
