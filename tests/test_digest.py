import io

import pytest

from contentstore.errors import InvalidDigest
from contentstore.model import digest as digests
from contentstore.model.digest import Digest

GOOD = "sha256:" + "a" * 64


@pytest.mark.parametrize("value", [
    "sha256:../../x",
    "sha256:" + "A" * 64,
    "SHA256:" + "a" * 64,
    "sha256:" + "a" * 63,
    "sha256:" + "a" * 65,
    "sha384:" + "a" * 96,
    "md5:" + "a" * 32,
    "sha256" + "a" * 64,
    "sha256:" + "g" * 64,
    "sha512:" + "a" * 64,
    "sha256:" + "a" * 63 + "/",
    "",
    "sha256:",
])
def test_invalid_digests_are_refused(value):
    with pytest.raises(InvalidDigest) as info:
        Digest(value)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)


def test_valid_digests():
    d = Digest(GOOD)
    assert d.algorithm == "sha256" and d.hex == "a" * 64 and d == GOOD
    assert Digest("sha512:" + "0" * 128).algorithm == "sha512"


def test_hashing_helpers_agree():
    data = b"x" * (3 << 20) + b"tail"
    expected = digests.of_bytes(data)
    assert digests.of_file(io.BytesIO(data)) == (expected, len(data))
    assert digests.of_bytes(data, "sha512").algorithm == "sha512"
