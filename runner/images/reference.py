"""Image references in the docker reference grammar (`debian:bookworm`, `host:5000/a@sha256:…`)."""

from __future__ import annotations

import re

from pipeline.records import record
from runner.errors import ImageReferenceError

DEFAULT_REGISTRY = "docker.io"
DEFAULT_TAG = "latest"
_LEGACY_REGISTRIES = {"index.docker.io", "registry-1.docker.io"}

_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*\Z")
_DOMAIN = re.compile(
    r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
    r"(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*"
    r"(?::[0-9]+)?\Z"
)
_TAG = re.compile(r"[\w][\w.-]{0,127}\Z")
_DIGEST = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}\Z")
_EXAMPLE = "debian:bookworm, registry.example.test:5000/team/app:1.0, busybox@sha256:<64 hex>"


def _bad(text: str, what: str) -> ImageReferenceError:
    return ImageReferenceError(
        f"invalid image reference {text!r}: {what} (valid examples: {_EXAMPLE})"
    )


def check_digest(text: str, digest: str) -> str:
    """Return `digest` if it is a well-formed `algorithm:hex` digest, else raise for `text`."""
    if not _DIGEST.match(digest):
        raise _bad(text, f"digest {digest!r} is not of the form sha256:<64 hex digits>")
    algorithm, _, hexpart = digest.partition(":")
    if algorithm == "sha256" and len(hexpart) != 64:
        raise _bad(text, f"sha256 digest must have 64 hex digits, {digest!r} has {len(hexpart)}")
    if algorithm != "sha256":
        raise _bad(text, f"digest algorithm {algorithm!r} is not supported (use sha256)")
    return digest.lower()


@record
class Reference:
    """A parsed image reference: registry, repository, and a tag and/or a digest.

    `str()` is the canonical form (`docker.io/library/debian:bookworm`), `familiar` the short form
    people type (`debian:bookworm`). A reference with neither tag nor digest gets the tag `latest`.
    """

    registry: str
    repository: str
    tag: str | None = DEFAULT_TAG
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> Reference:
        """Parse `text` with docker's grammar and defaults; raise `ImageReferenceError` if bad."""
        original = text
        text = text.strip()
        if not text:
            raise _bad(original, "it is empty")
        if any(c.isspace() for c in text):
            raise _bad(original, "it contains whitespace")
        name, digest = text, None
        if "@" in text:
            name, _, digest = text.partition("@")
            digest = check_digest(original, digest)
        tag = None
        slash = name.rfind("/")
        colon = name.rfind(":")
        if colon > slash:
            name, tag = name[:colon], name[colon + 1 :]
            if not _TAG.match(tag):
                raise _bad(original, f"tag {tag!r} may hold only letters, digits, '_', '.', '-'")
        if not name:
            raise _bad(original, "the repository name is missing")
        registry, path = DEFAULT_REGISTRY, name
        first, sep, rest = name.partition("/")
        if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
            if not _DOMAIN.match(first):
                raise _bad(original, f"registry host {first!r} is not a valid host[:port]")
            registry, path = first, rest
        if registry in _LEGACY_REGISTRIES:
            registry = DEFAULT_REGISTRY
        for component in path.split("/"):
            if component != component.lower() and _COMPONENT.match(component.lower()):
                raise _bad(original, f"repository name {path!r} must be lowercase")
            if not _COMPONENT.match(component):
                raise _bad(
                    original,
                    f"repository path component {component!r} may hold only lowercase letters, "
                    "digits and single separators ('.', '_', '__', '-')",
                )
        if registry == DEFAULT_REGISTRY and "/" not in path:
            path = f"library/{path}"
        if len(registry) + 1 + len(path) > 255:
            raise _bad(original, "the repository name is longer than 255 characters")
        if tag is None and digest is None:
            tag = DEFAULT_TAG
        return cls(registry=registry, repository=path, tag=tag, digest=digest)

    @property
    def name(self) -> str:
        """The repository with its registry, without tag or digest."""
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text

    @property
    def familiar(self) -> str:
        """The short form: `debian:bookworm` rather than `docker.io/library/debian:bookworm`."""
        text = str(self)
        if self.registry == DEFAULT_REGISTRY:
            text = text.removeprefix(f"{DEFAULT_REGISTRY}/").removeprefix("library/")
        return text

    def with_tag(self, tag: str) -> Reference:
        """This repository with `tag` and no digest."""
        return Reference(self.registry, self.repository, tag, None)

    def with_digest(self, digest: str) -> Reference:
        """This repository pinned to `digest` (the tag is dropped)."""
        return Reference(self.registry, self.repository, None, digest)
