"""`runner.text_digest` gives the digests hashlib gives, for bytes and for any text."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from runner.images.blobs import sha256_digest
from runner.text_digest import small_sha256, text_sha256


@given(st.binary(max_size=4096))
def test_small_sha256_is_sha256(data: bytes) -> None:
    assert small_sha256(data) == hashlib.sha256(data).hexdigest()


@given(st.text())
def test_text_sha256_hashes_utf8_and_keeps_lone_surrogates(text: str) -> None:
    expected = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    assert text_sha256(text) == expected


def test_text_sha256_of_a_path_with_a_byte_that_is_not_utf8() -> None:
    # os.fsdecode turns such a byte into a lone surrogate; the name must still hash
    name = b"/data/k\xffpal".decode("utf-8", "surrogateescape")
    assert text_sha256(name) == hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()


def test_blob_digests_agree_on_both_sides_of_the_small_limit() -> None:
    for size in (0, 1, (1 << 16) - 1, 1 << 16, (1 << 16) + 1, 3 << 20):
        data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
        assert sha256_digest(data) == "sha256:" + hashlib.sha256(data).hexdigest()
