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
    person,
    verify_hmac_sha256,
)
from web.hooks.trigger import (
    Commit,
    Ignored,
    MergeRequest,
    MergeRequestAction,
    Provider,
    Repository,
    RepositoryIdentity,
    Source,
    Trigger,
    is_zero_sha,
)

HOST = "GitHub"
EVENT_HEADER = "X-GitHub-Event"
SIGNATURE_HEADER = "X-Hub-Signature-256"
DELIVERY_HEADERS = ("X-GitHub-Delivery",)
MAX_PUSH_COMMITS = 2048  # GitHub lists at most this many commits in a push payload


@dataclass(frozen=True)
class Dialect:
    """How a GitHub-shaped host names things: its pull request actions, its commit counts."""

    provider: Provider
    actions: Mapping[str, MergeRequestAction]
    total_commits_field: str | None
    commits_cap: int | None


GITHUB = Dialect(
    provider="github",
    actions={"opened": "opened", "synchronize": "synchronized", "reopened": "reopened"},
    total_commits_field=None,
    commits_cap=MAX_PUSH_COMMITS,
)


def parse(
    headers: Mapping[str, str], body: bytes, *, secret: str, verified: bool = False
) -> Trigger | Ignored:
    """Verify a GitHub delivery with `secret` and say what it asks for.

    Raises `SignatureError` (401), `HeaderError` / `PayloadError` (400) or
    `UnsupportedMediaTypeError` (415); anything kapal does not act on is `Ignored`.
    `verified`: the delivery was verified when it was recorded (its signature is not checked).
    """
    seen = Headers(headers)
    if not verified:  # a delivery recorded once verified (`web.hooks.parse_recorded`)
        verify_hmac_sha256(seen, body, secret, header=SIGNATURE_HEADER, prefix="sha256=", host=HOST)
    event = seen.required(EVENT_HEADER, "is this a GitHub webhook? (its URL is /hooks/github)")
    source = Source("github", delivery_id(seen, DELIVERY_HEADERS, body), event)
    if event not in ("push", "pull_request", "ping"):
        return source.ignored(
            f"event {event[:100]!r} starts no pipeline; kapal acts on push and pull_request"
        )
    fields = Fields(decode_body(seen, body, host=HOST, form=True), f"GitHub {event} payload")
    if event == "ping":
        hook = fields.optional_integer("hook_id")
        named = "" if hook is None else f" {hook}"
        return source.ignored(f"ping: webhook{named} reached kapal")
    if event == "push":
        return push_trigger(fields, GITHUB, source)
    return pull_request_trigger(fields, GITHUB, source)


def identify(headers: Mapping[str, str], body: bytes) -> RepositoryIdentity:
    """The repository a GitHub delivery claims to be about (unverified: use it to find the
    secret, then `parse`)."""
    fields = Fields(decode_body(Headers(headers), body, host=HOST, form=True), "GitHub payload")
    return repository_identity(fields, "github")


def repository_identity(fields: Fields, provider: Provider) -> RepositoryIdentity:
    """`repository.full_name` and its URLs from a GitHub-shaped payload."""
    repo = fields.object("repository")
    urls = (repo.optional_text(key) for key in ("clone_url", "ssh_url", "html_url", "git_url"))
    return RepositoryIdentity(
        provider=provider,
        full_name=repo.text("full_name"),
        clone_urls=tuple(url for url in urls if url),
    )


def _repository(fields: Fields) -> Repository:
    repo = fields.object("repository")
    return Repository(
        full_name=repo.text("full_name"),
        clone_url=repo.text("clone_url"),
        default_branch=repo.optional_text("default_branch"),
    )


def push_trigger(fields: Fields, dialect: Dialect, source: Source) -> Trigger | Ignored:
    """The trigger of a GitHub-shaped `push` payload (branch or tag), or why it is ignored."""
    ref = fields.ref_name("ref")
    after = fields.sha("after")
    before = fields.sha("before")
    unusable = source.unusable_push(ref, after, deleted=fields.boolean("deleted"))
    if unusable is not None:
        return unusable
    found = fields.optional_object("head_commit")
    head = Commit(after)
    if found is not None:
        author = found.optional_object("author")
        head = Commit(
            sha=found.sha("id"),  # a tag push's `after` may be the tag object; this is its commit
            message=found.optional_text("message") or "",
            author=_author(author) if author is not None else "",
            timestamp=found.optional_text("timestamp") or "",
        )
    files = None
    if ref.startswith("refs/heads/") and not is_zero_sha(before) and not fields.boolean("forced"):
        total = None
        if dialect.total_commits_field is not None:
            total = fields.optional_integer(dialect.total_commits_field)
        files = changed_files(fields.objects("commits"), total=total, cap=dialect.commits_cap)
    return source.push(
        ref=ref, before=before, head=head, repository=_repository(fields), changed_files=files
    )


def _author(who: Fields) -> str:
    name = who.optional_text("name") or who.optional_text("full_name") or who.optional_text("login")
    return person(name or who.optional_text("username"), who.optional_text("email"))


def pull_request_trigger(fields: Fields, dialect: Dialect, source: Source) -> Trigger | Ignored:
    """The trigger of a GitHub-shaped `pull_request` payload, or why it is ignored."""
    action = fields.text("action")
    number = fields.positive_integer("number")
    pr = fields.object("pull_request")
    mapped = dialect.actions.get(action)
    if mapped is None:
        return source.ignored(
            f"pull request #{number} {action[:100]}: only opened, reopened and synchronized "
            "pull requests start pipelines"
        )
    if pr.boolean("merged") or pr.optional_text("state") == "closed":
        return source.ignored(f"pull request #{number} is closed")
    head = pr.object("head")
    base = pr.object("base")
    repository = _repository(fields)
    head_repo = head.optional_object("repo")
    base_repo = base.optional_object("repo")
    source_repo = head_repo.text("full_name") if head_repo is not None else None
    target_repo = base_repo.text("full_name") if base_repo is not None else repository.full_name
    sha = head.sha("sha")
    request = MergeRequest(
        iid=number,
        action=mapped,
        title=pr.optional_text("title") or "",
        source_branch=head.ref_name("ref"),
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
    # the payload names the pull request's opener, not the head commit's author: git says
    return source.merge_request(
        request,
        head=Commit(sha),
        before=fields.optional_sha("before"),
        fetch_ref=f"refs/pull/{number}/head",
        repository=repository,
    )
