"""GitLab deliveries: `Push Hook`, `Tag Push Hook`, `Merge Request Hook`.

GitLab sends the webhook's secret token itself in `X-Gitlab-Token` (compared in constant time);
the event is `X-Gitlab-Event`; the delivery id is `Idempotency-Key` (the same across retries),
else `X-Gitlab-Event-UUID`. A push lists at most 20 commits beside `total_commits_count`. New
commits on a merge request arrive as action `update` with `object_attributes.oldrev` set; an
update without `oldrev` (a title, a label) starts nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

from web.hooks.delivery import (
    Fields,
    Headers,
    changed_files,
    decode_body,
    delivery_id,
    person,
    verify_token,
)
from web.hooks.trigger import (
    Commit,
    Ignored,
    MergeRequest,
    MergeRequestAction,
    Repository,
    RepositoryIdentity,
    Source,
    Trigger,
    is_zero_sha,
)

HOST = "GitLab"
EVENT_HEADER = "X-Gitlab-Event"
TOKEN_HEADER = "X-Gitlab-Token"
DELIVERY_HEADERS = ("Idempotency-Key", "X-Gitlab-Event-UUID")
PUSH_EVENTS = ("Push Hook", "Tag Push Hook")
MERGE_REQUEST_EVENT = "Merge Request Hook"
ACTIONS: dict[str, MergeRequestAction] = {"open": "opened", "reopen": "reopened"}


def parse(
    headers: Mapping[str, str], body: bytes, *, secret: str, verified: bool = False
) -> Trigger | Ignored:
    """Verify a GitLab delivery's token against `secret` and say what it asks for.

    Raises `SignatureError` (401), `HeaderError` / `PayloadError` (400) or
    `UnsupportedMediaTypeError` (415); anything kapal does not act on is `Ignored`.
    `verified`: the delivery was verified when it was recorded (its signature is not checked).
    """
    seen = Headers(headers)
    if not verified:  # a delivery recorded once verified (`web.hooks.parse_recorded`)
        verify_token(seen, secret, header=TOKEN_HEADER, host=HOST)
    event = seen.required(EVENT_HEADER, "is this a GitLab webhook? (its URL is /hooks/gitlab)")
    source = Source("gitlab", delivery_id(seen, DELIVERY_HEADERS, body), event)
    if event not in (*PUSH_EVENTS, MERGE_REQUEST_EVENT):
        return source.ignored(
            f"event {event[:100]!r} starts no pipeline; kapal acts on Push Hook, "
            "Tag Push Hook and Merge Request Hook"
        )
    fields = Fields(decode_body(seen, body, host=HOST, form=False), f"GitLab {event} payload")
    if event == MERGE_REQUEST_EVENT:
        return _merge_request(fields, source)
    return _push(fields, source)


def identify(headers: Mapping[str, str], body: bytes) -> RepositoryIdentity:
    """The project a GitLab delivery claims to be about (unverified: use it to find the
    secret, then `parse`)."""
    fields = Fields(decode_body(Headers(headers), body, host=HOST, form=False), "GitLab payload")
    project = fields.object("project")
    urls = (
        project.optional_text(key)
        for key in ("git_http_url", "http_url", "git_ssh_url", "ssh_url", "web_url")
    )
    return RepositoryIdentity(
        provider="gitlab",
        full_name=project.text("path_with_namespace"),
        clone_urls=tuple(dict.fromkeys(url for url in urls if url)),
    )


def _repository(fields: Fields) -> Repository:
    project = fields.object("project")
    return Repository(
        full_name=project.text("path_with_namespace"),
        clone_url=project.optional_text("git_http_url") or project.text("http_url", "a clone URL"),
        default_branch=project.optional_text("default_branch"),
    )


def _commit(commit: Fields, sha: str) -> Commit:
    author = commit.optional_object("author")
    return Commit(
        sha=sha,
        message=commit.optional_text("message") or "",
        author=person(author.optional_text("name"), author.optional_text("email"))
        if author is not None
        else "",
        timestamp=commit.optional_text("timestamp") or "",
    )


def _push(fields: Fields, source: Source) -> Trigger | Ignored:
    ref = fields.ref_name("ref")
    before = fields.sha("before")
    after = fields.sha("after")
    unusable = source.unusable_push(ref, after)
    if unusable is not None:
        return unusable
    sha = fields.optional_sha("checkout_sha") or after  # a tag's `after` may be the tag object
    commits = fields.objects("commits")
    listed = next((commit for commit in commits if commit.optional_text("id") == sha), None)
    files = None
    if ref.startswith("refs/heads/") and not is_zero_sha(before):
        total = fields.optional_integer("total_commits_count")
        files = changed_files(commits, total=total, cap=None)
    return source.push(
        ref=ref,
        before=before,
        head=_commit(listed, sha) if listed is not None else Commit(sha),
        repository=_repository(fields),
        changed_files=files,
    )


def _merge_request(fields: Fields, source: Source) -> Trigger | Ignored:
    attrs = fields.object("object_attributes")
    iid = attrs.positive_integer("iid")
    action = attrs.text("action", "the merge request action (open, update, reopen, ...)")
    oldrev = attrs.optional_sha("oldrev")
    mapped = ACTIONS.get(action)
    if mapped is None and action == "update":
        if oldrev is None:
            return source.ignored(f"merge request !{iid} updated without new commits")
        mapped = "synchronized"
    if mapped is None:
        return source.ignored(
            f"merge request !{iid} {action[:100]}: only opened, reopened and updated (new "
            "commits) merge requests start pipelines"
        )
    state = attrs.optional_text("state")
    if state not in (None, "opened"):
        return source.ignored(f"merge request !{iid} is {state[:100]}")
    repository = _repository(fields)
    last = attrs.object("last_commit")
    head = _commit(last, last.sha("id"))
    origin = attrs.optional_object("source")
    target = attrs.optional_object("target")
    source_path = origin.optional_text("path_with_namespace") if origin is not None else None
    target_path = (
        target.optional_text("path_with_namespace") if target is not None else None
    ) or repository.full_name
    source_id = attrs.optional_integer("source_project_id")
    target_id = attrs.optional_integer("target_project_id")
    if source_id is not None and target_id is not None:
        from_fork = source_id != target_id
    else:
        from_fork = source_path is None or source_path != target_path
    request = MergeRequest(
        iid=iid,
        action=mapped,
        title=attrs.optional_text("title") or "",
        source_branch=attrs.ref_name("source_branch"),
        target_branch=attrs.ref_name("target_branch"),
        source_sha=head.sha,
        target_sha=None,
        source_repository=source_path,
        source_clone_url=origin.optional_text("git_http_url") if origin is not None else None,
        target_repository=target_path,
        from_fork=from_fork,
        url=attrs.optional_text("url") or "",
    )
    return source.merge_request(
        request,
        head=head,
        before=oldrev,
        fetch_ref=f"refs/merge-requests/{iid}/head",
        repository=repository,
    )
