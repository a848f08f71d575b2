"""Image references: docker's grammar, defaults, canonical and familiar forms, clear errors."""

from __future__ import annotations

import pytest

from runner.errors import ImageReferenceError
from runner.images import Reference

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest", "canonical", "familiar"),
    [
        (
            "debian",
            "docker.io",
            "library/debian",
            "latest",
            None,
            "docker.io/library/debian:latest",
            "debian:latest",
        ),
        (
            "debian:bookworm",
            "docker.io",
            "library/debian",
            "bookworm",
            None,
            "docker.io/library/debian:bookworm",
            "debian:bookworm",
        ),
        (
            "team/app:1.0",
            "docker.io",
            "team/app",
            "1.0",
            None,
            "docker.io/team/app:1.0",
            "team/app:1.0",
        ),
        (
            "docker.io/library/busybox",
            "docker.io",
            "library/busybox",
            "latest",
            None,
            "docker.io/library/busybox:latest",
            "busybox:latest",
        ),
        (
            "index.docker.io/library/busybox:1",
            "docker.io",
            "library/busybox",
            "1",
            None,
            "docker.io/library/busybox:1",
            "busybox:1",
        ),
        (
            "localhost/app",
            "localhost",
            "app",
            "latest",
            None,
            "localhost/app:latest",
            "localhost/app:latest",
        ),
        (
            "localhost:5000/a/b/c:v_1.2-x",
            "localhost:5000",
            "a/b/c",
            "v_1.2-x",
            None,
            "localhost:5000/a/b/c:v_1.2-x",
            "localhost:5000/a/b/c:v_1.2-x",
        ),
        (
            f"registry.example.test:5000/team/app@{DIGEST}",
            "registry.example.test:5000",
            "team/app",
            None,
            DIGEST,
            f"registry.example.test:5000/team/app@{DIGEST}",
            f"registry.example.test:5000/team/app@{DIGEST}",
        ),
        (
            f"debian:bookworm@{DIGEST}",
            "docker.io",
            "library/debian",
            "bookworm",
            DIGEST,
            f"docker.io/library/debian:bookworm@{DIGEST}",
            f"debian:bookworm@{DIGEST}",
        ),
        (
            "127.0.0.1:5000/my_app__x.y-z",
            "127.0.0.1:5000",
            "my_app__x.y-z",
            "latest",
            None,
            "127.0.0.1:5000/my_app__x.y-z:latest",
            "127.0.0.1:5000/my_app__x.y-z:latest",
        ),
    ],
)
def test_parse_valid(
    text: str,
    registry: str,
    repository: str,
    tag: str | None,
    digest: str | None,
    canonical: str,
    familiar: str,
) -> None:
    ref = Reference.parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (
        registry,
        repository,
        tag,
        digest,
    )
    assert str(ref) == canonical
    assert ref.familiar == familiar
    assert Reference.parse(str(ref)) == ref


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("", "empty"),
        ("Debian", "lowercase"),
        ("team/App:1", "lowercase"),
        ("debian:", "tag"),
        ("debian:-x", "tag"),
        ("debian:" + "x" * 129, "tag"),
        ("debian@sha256:abc", "sha256"),
        (f"debian@md5:{'a' * 32}", "algorithm"),
        ("deb ian", "whitespace"),
        ("a//b", "component"),
        ("-x/app", "component"),
        ("host:99999999999/app:x@", "digest"),
        ("my-host_:5000/app", "registry host"),
    ],
)
def test_parse_invalid_says_what_and_gives_an_example(text: str, complaint: str) -> None:
    with pytest.raises(ImageReferenceError) as info:
        Reference.parse(text)
    message = str(info.value)
    assert complaint in message
    assert "valid examples: debian:bookworm" in message
    assert repr(text) in message


def test_with_tag_and_digest() -> None:
    ref = Reference.parse("127.0.0.1:5000/app:1")
    assert str(ref.with_tag("2")) == "127.0.0.1:5000/app:2"
    assert str(ref.with_digest(DIGEST)) == f"127.0.0.1:5000/app@{DIGEST}"
