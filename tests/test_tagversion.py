"""Tags read as versions (sync --latest): SemVer precedence, non-versions left out."""

import random

import pytest

from contentstore.model.tagversion import TagVersion, is_version, latest


@pytest.mark.parametrize("tag", ["1", "v1.2", "3.19.1", "1.0.0-rc.1", "1.25-alpine", "20240101", "V2.0.0.1"])
def test_versions(tag):
    assert is_version(tag)


@pytest.mark.parametrize("tag", ["latest", "stable", "a1b2c3d", "v", "1.", "1.0-", "1.0-a..b", "1.2.3.4.5",
                                 "1_2", "release-1.0"])
def test_not_versions(tag):
    assert not is_version(tag)


def test_semver_precedence():
    # from SemVer 2.0's example, plus missing parts, the v prefix and words after numbers
    ordered = ["0.9", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2",
               "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.2-alpine", "v1.2", "1.10", "2", "10.0.0"]
    shuffled = ordered[:]
    random.Random(7).shuffle(shuffled)
    assert [v.tag for v in sorted(TagVersion.parse(t) for t in shuffled)] == ordered


def test_equal_precedence_is_ordered_by_text():
    assert latest(["1.2", "1.2.0", "v1.2"], 3) == ["v1.2", "1.2.0", "1.2"]


def test_latest_leaves_out_what_is_no_version():
    tags = ["latest", "1.9", "1.10", "1.10-rc1", "stable", "1.8.3", "0.1"]
    assert latest(tags, 3) == ["1.10", "1.10-rc1", "1.9"]
    assert latest(tags, 0) == []
    assert latest(["latest", "main"], 2) == []
    assert latest(tags, 100) == ["1.10", "1.10-rc1", "1.9", "1.8.3", "0.1"]
