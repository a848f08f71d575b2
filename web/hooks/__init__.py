"""Webhooks from git hosts: verify a delivery, then say what it asks for.

Use, in the order the checks must happen::

    check_body_size(content_length)                          # 413 before reading the body
    who = identify_repository("github", headers, body)       # unverified: find the repository
    outcome = parse_delivery("github", headers, body, secret=repository.secret)
    if isinstance(outcome, Ignored): answer 202 outcome.body()
    else: record a pipeline for the Trigger, keyed by (provider, outcome.delivery_id)

`parse_delivery` raises only `web.errors.WebhookError` subclasses (each with its 4xx `status`),
whatever the headers and body. `web.hooks.planning.plan_trigger` then fetches the commit into
the repository's mirror (`web.mirrors.RepositoryMirror`) and plans it; `trigger_context` alone
turns a `Trigger` into what `pipeline.plan` takes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from web.errors import HeaderError
from web.hooks import gitea, github, gitlab
from web.hooks.context import CommitFacts, merge_request_variables, trigger_context
from web.hooks.delivery import DEFAULT_BODY_LIMIT, Headers, check_body_size, read_limited
from web.hooks.trigger import (
    PROVIDERS,
    ZERO_SHA,
    Ignored,
    MergeRequest,
    Provider,
    RepositoryIdentity,
    Trigger,
)

__all__ = [
    "DEFAULT_BODY_LIMIT",
    "PROVIDERS",
    "ZERO_SHA",
    "CommitFacts",
    "Headers",
    "Ignored",
    "MergeRequest",
    "Provider",
    "RepositoryIdentity",
    "Trigger",
    "check_body_size",
    "identify_repository",
    "merge_request_variables",
    "parse_delivery",
    "parse_recorded",
    "read_limited",
    "trigger_context",
]

_PARSERS: dict[str, Callable[..., Trigger | Ignored]] = {
    "github": github.parse,
    "gitlab": gitlab.parse,
    "gitea": gitea.parse,
}
_IDENTIFIERS: dict[str, Callable[[Mapping[str, str], bytes], RepositoryIdentity]] = {
    "github": github.identify,
    "gitlab": gitlab.identify,
    "gitea": gitea.identify,
}


def _known(provider: str) -> None:
    if provider not in _PARSERS:
        raise HeaderError(
            f"unknown git host {provider[:100]!r}: kapal takes webhooks from "
            + ", ".join(PROVIDERS)
        )


def parse_delivery(
    provider: str, headers: Mapping[str, str], body: bytes, *, secret: str
) -> Trigger | Ignored:
    """Verify one delivery from `provider` with the repository's `secret` and parse it."""
    _known(provider)
    return _PARSERS[provider](headers, body, secret=secret)


def parse_recorded(provider: str, headers: Mapping[str, str], body: bytes) -> Trigger | Ignored:
    """Parse again a delivery kapal recorded (verified before it was recorded: the signature
    is not checked again; GitLab's token is not kept with it)."""
    _known(provider)
    return _PARSERS[provider](headers, body, secret="", verified=True)


def identify_repository(
    provider: str, headers: Mapping[str, str], body: bytes
) -> RepositoryIdentity:
    """The repository a delivery names, before verification (to find the secret to verify
    with). Raises `PayloadError` / `UnsupportedMediaTypeError` for a body that says nothing."""
    _known(provider)
    return _IDENTIFIERS[provider](headers, body)
