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
    is_zero_sha,
    person,
    short_ref,
    verify_token,
)
from web.hooks.trigger import (
    ZERO_SHA,
    Ignored,
    MergeRequest,
    MergeRequestAction,
    RepositoryIdentity,
    Trigger,
)

HOST = "GitLab"
EVENT_HEADER = "X-Gitlab-Event"
TOKEN_HEADER = "X-Gitlab-Token"
DELIVERY_HEADERS = ("Idempotency-Key", "X-Gitlab-Event-UUID")
PUSH_EVENTS = ("Push Hook", "Tag Push Hook")
MERGE_REQUEST_EVENT = "Merge Request Hook"
ACTIONS: dict[str, MergeRequestAction] = {"open": "opened", "reopen": "reopened"}


def parse(headers: Mapping[str, str], body: bytes, *, secret: str) -> Trigger | Ignored:
    """Verify a GitLab delivery's token against `secret` and say what it asks for.

    Raises `SignatureError` (401), `HeaderError` / `PayloadError` (400) or
    `UnsupportedMediaTypeError` (415); anything kapal does not act on is `Ignored`.
    """
    seen = Headers(headers)
    verify_token(seen, secret, header=TOKEN_HEADER, host=HOST)
    event = seen.required(EVENT_HEADER, "is this a GitLab webhook? (its URL is /hooks/gitlab)")
    delivery = delivery_id(seen, DELIVERY_HEADERS, body)
    if event not in (*PUSH_EVENTS, MERGE_REQUEST_EVENT):
        reason = (
            f"event {event[:100]!r} starts no pipeline; kapal acts on Push Hook, "
            "Tag Push Hook and Merge Request Hook"
        )
        return Ignored("gitlab", delivery, event, reason)
    fields = Fields(decode_body(seen, body, host=HOST, form=False), f"GitLab {event} payload")
    if event == MERGE_REQUEST_EVENT:
        return _merge_request(fields, delivery=delivery, event=event)
    return _push(fields, delivery=delivery, event=event)


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


def _project(fields: Fields) -> tuple[str, str, str | None]:
    project = fields.object("project")
    clone_url = project.optional_text("git_http_url") or project.text("http_url", "a clone URL")
    return project.text("path_with_namespace"), clone_url, project.optional_text("default_branch")


def _push(fields: Fields, *, delivery: str, event: str) -> Trigger | Ignored:
    ref = fields.ref_name("ref")
    before = fields.sha("before")
    after = fields.sha("after")
    branch, tag = short_ref(ref)
    if branch is None and tag is None:
        reason = f"push to {ref}: only pushes to branches and tags start pipelines"
        return Ignored("gitlab", delivery, event, reason)
    if is_zero_sha(after):
        what = f"branch {branch}" if branch is not None else f"tag {tag}"
        return Ignored("gitlab", delivery, event, f"{what} deleted")
    full_name, clone_url, default_branch = _project(fields)
    sha = fields.optional_sha("checkout_sha") or after  # a tag's `after` may be the tag object
    commits = fields.objects("commits")
    head = next((commit for commit in commits if commit.optional_text("id") == sha), None)
    message = timestamp = who = ""
    if head is not None:
        message = head.optional_text("message") or ""
        timestamp = head.optional_text("timestamp") or ""
        author = head.optional_object("author")
        if author is not None:
            who = person(author.optional_text("name"), author.optional_text("email"))
    files = None
    if branch is not None and not is_zero_sha(before):
        files = changed_files(
            commits, total=fields.optional_integer("total_commits_count"), cap=None
        )
    return Trigger(
        provider="gitlab",
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
        repository=full_name,
        clone_url=clone_url,
        default_branch=default_branch,
        changed_files=files,
    )


def _merge_request(fields: Fields, *, delivery: str, event: str) -> Trigger | Ignored:
    attrs = fields.object("object_attributes")
    iid = attrs.positive_integer("iid")
    action = attrs.text("action", "the merge request action (open, update, reopen, ...)")
    oldrev = attrs.optional_sha("oldrev")
    mapped = ACTIONS.get(action)
    if mapped is None and action == "update":
        if oldrev is None:
            reason = f"merge request !{iid} updated without new commits"
            return Ignored("gitlab", delivery, event, reason)
        mapped = "synchronized"
    if mapped is None:
        reason = (
            f"merge request !{iid} {action[:100]}: only opened, reopened and updated (new "
            "commits) merge requests start pipelines"
        )
        return Ignored("gitlab", delivery, event, reason)
    state = attrs.optional_text("state")
    if state not in (None, "opened"):
        return Ignored("gitlab", delivery, event, f"merge request !{iid} is {state[:100]}")
    full_name, clone_url, default_branch = _project(fields)
    last = attrs.object("last_commit")
    sha = last.sha("id")
    author = last.optional_object("author")
    source_branch = attrs.ref_name("source_branch")
    source = attrs.optional_object("source")
    target = attrs.optional_object("target")
    source_path = source.optional_text("path_with_namespace") if source is not None else None
    target_path = (
        target.optional_text("path_with_namespace") if target is not None else None
    ) or full_name
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
        source_branch=source_branch,
        target_branch=attrs.ref_name("target_branch"),
        source_sha=sha,
        target_sha=None,
        source_repository=source_path,
        source_clone_url=source.optional_text("git_http_url") if source is not None else None,
        target_repository=target_path,
        from_fork=from_fork,
        url=attrs.optional_text("url") or "",
    )
    return Trigger(
        provider="gitlab",
        delivery_id=delivery,
        event=event,
        kind="merge_request",
        ref=f"refs/heads/{source_branch}",
        branch=source_branch,
        tag=None,
        sha=sha,
        before_sha=oldrev or ZERO_SHA,
        fetch_ref=f"refs/merge-requests/{iid}/head",
        message=last.optional_text("message") or "",
        author=person(author.optional_text("name"), author.optional_text("email"))
        if author is not None
        else "",
        timestamp=last.optional_text("timestamp") or "",
        repository=full_name,
        clone_url=clone_url,
        default_branch=default_branch,
        changed_files=None,
        merge_request=request,
    )
