"""Gitea (and Forgejo) deliveries: `push` (branches and tags) and `pull_request`.

Gitea signs the raw body with HMAC-SHA256 under the webhook's secret and sends the bare hex in
`X-Gitea-Signature` (Forgejo also in `X-Forgejo-Signature`); the event is `X-Gitea-Event`, the
delivery id `X-Gitea-Delivery`. New commits on a pull request arrive as `pull_request_sync`
(in `X-Gitea-Event-Type`, or as the event itself) with the action `synchronized`. Payloads
follow GitHub's shapes, with `total_commits` beside a possibly shortened commit list.
"""

from __future__ import annotations

from collections.abc import Mapping

from web.hooks.delivery import Fields, Headers, decode_body, delivery_id, verify_hmac_sha256
from web.hooks.github import Dialect, pull_request_trigger, push_trigger, repository_identity
from web.hooks.trigger import Ignored, RepositoryIdentity, Source, Trigger

HOST = "Gitea"
EVENT_HEADERS = ("X-Gitea-Event-Type", "X-Gitea-Event", "X-Forgejo-Event")
SIGNATURE_HEADERS = ("X-Gitea-Signature", "X-Forgejo-Signature")
DELIVERY_HEADERS = ("X-Gitea-Delivery", "X-Forgejo-Delivery")
PULL_REQUEST_EVENTS = ("pull_request", "pull_request_sync")

GITEA = Dialect(
    provider="gitea",
    actions={"opened": "opened", "synchronized": "synchronized", "reopened": "reopened"},
    total_commits_field="total_commits",
    commits_cap=None,
)


def parse(
    headers: Mapping[str, str], body: bytes, *, secret: str, verified: bool = False
) -> Trigger | Ignored:
    """Verify a Gitea delivery with `secret` and say what it asks for.

    Raises `SignatureError` (401), `HeaderError` / `PayloadError` (400) or
    `UnsupportedMediaTypeError` (415); anything kapal does not act on is `Ignored`.
    `verified`: the delivery was verified when it was recorded (its signature is not checked).
    """
    seen = Headers(headers)
    if not verified:  # a delivery recorded once verified (`web.hooks.parse_recorded`)
        signature = next(
            (name for name in SIGNATURE_HEADERS if seen.get(name)), SIGNATURE_HEADERS[0]
        )
        verify_hmac_sha256(seen, body, secret, header=signature, prefix="", host=HOST)
    event = next((seen.get(name) for name in EVENT_HEADERS if seen.get(name)), None)
    if event is None:
        event = seen.required(
            EVENT_HEADERS[1], "is this a Gitea webhook? (its URL is /hooks/gitea)"
        )
    source = Source("gitea", delivery_id(seen, DELIVERY_HEADERS, body), event)
    if event not in ("push", *PULL_REQUEST_EVENTS):
        return source.ignored(
            f"event {event[:100]!r} starts no pipeline; kapal acts on push and pull_request"
        )
    fields = Fields(decode_body(seen, body, host=HOST, form=True), f"Gitea {event} payload")
    if event == "push":
        return push_trigger(fields, GITEA, source)
    return pull_request_trigger(fields, GITEA, source)


def identify(headers: Mapping[str, str], body: bytes) -> RepositoryIdentity:
    """The repository a Gitea delivery claims to be about (unverified: use it to find the
    secret, then `parse`)."""
    fields = Fields(decode_body(Headers(headers), body, host=HOST, form=True), "Gitea payload")
    return repository_identity(fields, "gitea")
