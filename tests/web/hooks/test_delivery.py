"""Pieces every host shares: the body limit, repository identity, header lookup."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from web.errors import PayloadTooLargeError
from web.hooks import DEFAULT_BODY_LIMIT, RepositoryIdentity, check_body_size, read_limited
from web.hooks.trigger import normalised_url


def test_body_over_the_limit_is_413_with_what_to_do() -> None:
    check_body_size(DEFAULT_BODY_LIMIT)
    check_body_size(None)
    with pytest.raises(PayloadTooLargeError) as caught:
        check_body_size(DEFAULT_BODY_LIMIT + 1)
    assert caught.value.status == 413
    assert str(caught.value) == (
        f"the webhook body is {DEFAULT_BODY_LIMIT + 1} bytes, over the limit of "
        f"{DEFAULT_BODY_LIMIT} bytes; deliver fewer commits per push or raise the server's "
        "webhook body limit"
    )


def test_streamed_body_is_refused_as_soon_as_it_passes_the_limit() -> None:
    sent: list[int] = []

    async def chunks() -> AsyncIterator[bytes]:
        for index in range(100):
            sent.append(index)
            yield b"x" * 1000

    assert asyncio.run(read_limited(chunks(), limit=100_000)) == b"x" * 100_000
    sent.clear()

    async def refused() -> str:
        stream = chunks()
        try:
            await read_limited(stream, limit=2500)
        except PayloadTooLargeError as exc:
            return str(exc)  # caught inside the loop: no coroutine outlives the run
        finally:
            await stream.aclose()
        return "accepted"

    assert asyncio.run(refused()) != "accepted"
    assert sent == [0, 1, 2]  # the rest was never read


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/Acme/Shop.git",
        "https://user:token@github.com:443/acme/shop/",
        "git@github.com:acme/shop.git",
        "ssh://git@github.com/acme/shop.git",
        "https://github.com/acme/shop",
    ],
)
def test_the_forms_of_one_repository_url_compare_equal(url: str) -> None:
    assert normalised_url(url) == "github.com/acme/shop"


def test_identity_matches_by_name_or_by_url() -> None:
    who = RepositoryIdentity("github", "acme/shop", ("https://github.com/acme/shop.git",))
    assert who.matches(name="ACME/shop", clone_url="https://elsewhere.example/x.git")
    assert who.matches(name="renamed/shop", clone_url="git@github.com:acme/shop.git")
    assert not who.matches(name="acme/shop2", clone_url="https://github.com/acme/shop2.git")
    assert not who.matches(name="other", clone_url="not a url")
