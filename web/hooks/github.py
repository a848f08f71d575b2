"""GitHub deliveries: `push` (branches and tags), `pull_request`, `ping`.

GitHub signs the raw body with HMAC-SHA256 under the webhook's secret and sends
`X-Hub-Signature-256: sha256=<hex>`; the event is `X-GitHub-Event`, the delivery id
`X-GitHub-Delivery` (kept across redeliveries). The body is JSON, or form data whose `payload`
field holds the JSON (the signature then covers the form body as sent). Gitea's payloads follow
the same shapes, so `web.hooks.gitea` reuses `push_trigger` and `pull_request_trigger`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from web.hooks.delivery import (
    Fields,
    Headers,
    changed_files,
    decode_body,
    delivery_id,
    is_zero_sha,
    person,
    short_ref,
    verify_hmac_sha256,
)
from web.hooks.trigger import (
    ZERO_SHA,
    Ignored,
    MergeRequest,
    MergeRequestAction,
    Provider,
    RepositoryIdentity,
    Trigger,
)

HOST = "GitHub"
EVENT_HEADER = "X-GitHub-Event"
SIGNATURE_HEADER = "X-Hub-Signature-256"
DELIVERY_HEADERS = ("X-GitHub-Delivery",)
MAX_PUSH_COMMITS = 2048  # GitHub lists at most this many commits in a push payload


@dataclass(frozen=True)
class Dialect:
    """How a GitHub-shaped host names things: its name, actions and commit count field."""

    provider: Provider
    host: str
    actions: Mapping[str, MergeRequestAction]
    total_commits_field: str | None
    commits_cap: int | None


GITHUB = Dialect(
    provider="github",
    host=HOST,
    actions={"opened": "opened", "synchronize": "synchronized", "reopened": "reopened"},
    total_commits_field=None,
    commits_cap=MAX_PUSH_COMMITS,
)


def parse(headers: Mapping[str, str], body: bytes, *, secret: str) -> Trigger | Ignored:
    """Verify a GitHub delivery with `secret` and say what it asks for.

    Raises `SignatureError` (401), `HeaderError` / `PayloadError` (400) or
    `UnsupportedMediaTypeError` (415); anything kapal does not act on is `Ignored`.
    """
    seen = Headers(headers)
    verify_hmac_sha256(seen, body, secret, header=SIGNATURE_HEADER, prefix="sha256=", host=HOST)
    event = seen.required(EVENT_HEADER, "is this a GitHub webhook? (its URL is /hooks/github)")
    delivery = delivery_id(seen, DELIVERY_HEADERS, body)
    if event not in ("push", "pull_request", "ping"):
        return Ignored("github", delivery, event, _unsupported(event))
    fields = Fields(decode_body(seen, body, host=HOST, form=True), f"GitHub {event} payload")
    if event == "ping":
        hook = fields.optional_integer("hook_id")
        named = f" {hook}" if hook is not None else ""
        return Ignored("github", delivery, event, f"ping: webhook{named} reached kapal")
    if event == "push":
        return push_trigger(fields, GITHUB, delivery=delivery, event=event)
    return pull_request_trigger(fields, GITHUB, delivery=delivery, event=event)


def identify(headers: Mapping[str, str], body: bytes) -> RepositoryIdentity:
    """The repository a GitHub delivery claims to be about (unverified: use it to find the
    secret, then `parse`)."""
    fields = Fields(decode_body(Headers(headers), body, host=HOST, form=True), "GitHub payload")
    return repository_identity(fields, "github")


def _unsupported(event: str) -> str:
    return f"event {event[:100]!r} starts no pipeline; kapal acts on push and pull_request"


def repository_identity(fields: Fields, provider: Provider) -> RepositoryIdentity:
    """`repository.full_name` and its URLs from a GitHub-shaped payload."""
    repo = fields.object("repository")
    urls = (repo.optional_text(key) for key in ("clone_url", "ssh_url", "html_url", "git_url"))
    return RepositoryIdentity(
        provider=provider,
        full_name=repo.text("full_name"),
        clone_urls=tuple(url for url in urls if url),
    )


def push_trigger(
    fields: Fields, dialect: Dialect, *, delivery: str, event: str
) -> Trigger | Ignored:
    """The trigger of a GitHub-shaped `push` payload (branch or tag), or why it is ignored."""
    ref = fields.ref_name("ref")
    after = fields.sha("after")
    before = fields.sha("before")
    branch, tag = short_ref(ref)
    if branch is None and tag is None:
        reason = f"push to {ref}: only pushes to branches and tags start pipelines"
        return Ignored(dialect.provider, delivery, event, reason)
    if fields.boolean("deleted") or is_zero_sha(after):
        what = f"branch {branch}" if branch is not None else f"tag {tag}"
        return Ignored(dialect.provider, delivery, event, f"{what} deleted")
    repo = fields.object("repository")
    head = fields.optional_object("head_commit")
    if head is not None:
        author = head.optional_object("author")
        sha = head.sha("id")  # a tag push's `after` may be the tag object; this is its commit
        message = head.optional_text("message") or ""
        timestamp = head.optional_text("timestamp") or ""
        who = _author(author) if author is not None else ""
    else:
        sha, message, timestamp, who = after, "", "", ""
    files = None
    if branch is not None and not is_zero_sha(before) and not fields.boolean("forced"):
        total = (
            fields.optional_integer(dialect.total_commits_field)
            if dialect.total_commits_field
            else None
        )
        files = changed_files(fields.objects("commits"), total=total, cap=dialect.commits_cap)
    return Trigger(
        provider=dialect.provider,
        delivery_id=delivery,
        event=event,
        kind="push" if branch is not None else "tag_push",
        ref=ref,
        branch=branch,
        tag=tag,
        sha=sha,
        before_sha=before,
        fetch_ref=ref,
        message=message,
        author=who,
        timestamp=timestamp,
        repository=repo.text("full_name"),
        clone_url=repo.text("clone_url"),
        default_branch=repo.optional_text("default_branch"),
        changed_files=files,
    )


def _author(who: Fields) -> str:
    name = who.optional_text("name") or who.optional_text("full_name") or who.optional_text("login")
    return person(name or who.optional_text("username"), who.optional_text("email"))


def pull_request_trigger(
    fields: Fields, dialect: Dialect, *, delivery: str, event: str
) -> Trigger | Ignored:
    """The trigger of a GitHub-shaped `pull_request` payload, or why it is ignored."""
    action = fields.text("action")
    number = fields.positive_integer("number")
    pr = fields.object("pull_request")
    mapped = dialect.actions.get(action)
    if mapped is None:
        reason = (
            f"pull request #{number} {action[:100]}: only opened, reopened and synchronized "
            "pull requests start pipelines"
        )
        return Ignored(dialect.provider, delivery, event, reason)
    if pr.boolean("merged") or pr.optional_text("state") == "closed":
        return Ignored(dialect.provider, delivery, event, f"pull request #{number} is closed")
    head = pr.object("head")
    base = pr.object("base")
    repo = fields.object("repository")
    full_name = repo.text("full_name")
    head_repo = head.optional_object("repo")
    base_repo = base.optional_object("repo")
    source_repo = head_repo.text("full_name") if head_repo is not None else None
    target_repo = base_repo.text("full_name") if base_repo is not None else full_name
    source_branch = head.ref_name("ref")
    sha = head.sha("sha")
    request = MergeRequest(
        iid=number,
        action=mapped,
        title=pr.optional_text("title") or "",
        source_branch=source_branch,
        target_branch=base.ref_name("ref"),
        source_sha=sha,
        target_sha=base.optional_sha("sha"),
        source_repository=source_repo,
        source_clone_url=head_repo.optional_text("clone_url") if head_repo is not None else None,
        target_repository=target_repo,
        # a deleted fork leaves `head.repo` null: still someone else's code
        from_fork=source_repo != target_repo,
        url=pr.optional_text("html_url") or "",
    )
    return Trigger(
        provider=dialect.provider,
        delivery_id=delivery,
        event=event,
        kind="merge_request",
        ref=f"refs/heads/{source_branch}",
        branch=source_branch,
        tag=None,
        sha=sha,
        before_sha=fields.optional_sha("before") or ZERO_SHA,
        fetch_ref=f"refs/pull/{number}/head",
        message="",
        author="",  # the payload names the pull request's opener, not the commit's author
        timestamp="",
        repository=full_name,
        clone_url=repo.text("clone_url"),
        default_branch=repo.optional_text("default_branch"),
        changed_files=None,
        merge_request=request,
    )
