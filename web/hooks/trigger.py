"""What a parsed webhook delivery says: a `Trigger` to plan a pipeline for, or `Ignored`.

Both are frozen dataclasses of plain values (round-trip through `dataclasses.asdict`), built
only by the host parsers in `web.hooks.github`, `web.hooks.gitlab` and `web.hooks.gitea`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

Provider = Literal["github", "gitlab", "gitea"]
PROVIDERS: tuple[Provider, ...] = ("github", "gitlab", "gitea")

TriggerKind = Literal["push", "tag_push", "merge_request"]
MergeRequestAction = Literal["opened", "synchronized", "reopened"]

ZERO_SHA = "0" * 40
COMMIT_ID = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")  # SHA-1, or SHA-256 repositories


@dataclass(frozen=True)
class MergeRequest:
    """The merge (pull) request a `merge_request` trigger runs for.

    `source_sha` is the head commit (the trigger's `sha`); `target_sha` is the target branch's
    tip when the host sends it (GitHub, Gitea), else None. `from_fork` is True when the source
    branch lives in another repository (or in one that was deleted): such a pipeline runs code
    from outside the repository's writers and must not receive its secrets.
    """

    iid: int
    action: MergeRequestAction
    title: str
    source_branch: str
    target_branch: str
    source_sha: str
    target_sha: str | None
    source_repository: str | None
    source_clone_url: str | None
    target_repository: str
    from_fork: bool
    url: str = ""


@dataclass(frozen=True)
class Trigger:
    """A delivery that asks for a pipeline: a push, a tag push or a merge request update.

    - `ref` is the full ref the commit is on (`refs/heads/main`, `refs/tags/v1.0`, or for a merge
      request its source branch as `refs/heads/feature`); exactly one of `branch` and `tag` is set.
    - `sha` is the commit to run (a tag push's tag is peeled to its commit where the host says
      which); `before_sha` the ref's previous commit, `ZERO_SHA` for a new branch or when unknown.
    - `fetch_ref` is the ref of `clone_url`'s repository that holds `sha`: the pushed ref, or for
      a merge request the host's read-only ref (`refs/pull/7/head`, `refs/merge-requests/7/head`).
    - `clone_url` and `repository` are what the payload claims: look the repository up by them,
      but fetch from the clone URL the operator registered, never from a payload's.
    - `changed_files` lists the paths the pushed commits touched when the payload lists them all;
      None when it does not (a new branch, a force push, a truncated commit list, a merge request,
      a tag), so the caller computes them from git (`web.mirrors.RepositoryMirror.changed_files`).
    - `message`, `author` ("Name <email>") and `timestamp` describe the head commit when the
      payload does; empty strings when not (merge requests on GitHub and Gitea, a head commit
      missing from the list): fill them from git (`RepositoryMirror.commit_facts`). The pusher
      is not taken for the author.
    - `delivery_id` identifies the delivery for idempotency: the host's delivery header, or
      `sha256:<hex of the body>` when the host sent none.
    """

    provider: Provider
    delivery_id: str
    event: str
    kind: TriggerKind
    ref: str
    branch: str | None
    tag: str | None
    sha: str
    before_sha: str
    fetch_ref: str
    message: str
    author: str
    timestamp: str
    repository: str
    clone_url: str
    default_branch: str | None
    changed_files: tuple[str, ...] | None
    merge_request: MergeRequest | None = None

    @property
    def is_new_ref(self) -> bool:
        """True when the push created its branch or tag (no previous commit)."""
        return self.before_sha.strip("0") == ""


@dataclass(frozen=True)
class Commit:
    """The head commit as a payload describes it; empty strings for what it leaves out."""

    sha: str
    message: str = ""
    author: str = ""
    timestamp: str = ""


@dataclass(frozen=True)
class Repository:
    """The repository a payload is about: full name, clone URL, default branch if given."""

    full_name: str
    clone_url: str
    default_branch: str | None


@dataclass(frozen=True)
class Source:
    """Who sent a delivery: the host, the delivery id and the event name."""

    provider: Provider
    delivery_id: str
    event: str

    def ignored(self, reason: str) -> Ignored:
        """This delivery answered with `reason` and no pipeline."""
        return Ignored(self.provider, self.delivery_id, self.event, reason)

    def unusable_push(self, ref: str, after: str, *, deleted: bool = False) -> Ignored | None:
        """Why a push of `ref` to `after` starts nothing (not a branch or tag, a deletion),
        or None when it may."""
        branch, tag = short_ref(ref)
        if branch is None and tag is None:
            return self.ignored(f"push to {ref}: only pushes to branches and tags start pipelines")
        if deleted or is_zero_sha(after):
            return self.ignored(f"branch {branch} deleted" if tag is None else f"tag {tag} deleted")
        return None

    def push(
        self,
        *,
        ref: str,
        before: str,
        head: Commit,
        repository: Repository,
        changed_files: tuple[str, ...] | None,
    ) -> Trigger:
        """The trigger of a push of `head` to the branch or tag `ref`."""
        branch, tag = short_ref(ref)
        return Trigger(
            provider=self.provider,
            delivery_id=self.delivery_id,
            event=self.event,
            kind="push" if branch is not None else "tag_push",
            ref=ref,
            branch=branch,
            tag=tag,
            sha=head.sha,
            before_sha=before,
            fetch_ref=ref,
            message=head.message,
            author=head.author,
            timestamp=head.timestamp,
            repository=repository.full_name,
            clone_url=repository.clone_url,
            default_branch=repository.default_branch,
            changed_files=changed_files,
        )

    def merge_request(
        self,
        request: MergeRequest,
        *,
        head: Commit,
        before: str | None,
        fetch_ref: str,
        repository: Repository,
    ) -> Trigger:
        """The trigger of a merge request whose source branch is at `head`."""
        return Trigger(
            provider=self.provider,
            delivery_id=self.delivery_id,
            event=self.event,
            kind="merge_request",
            ref=f"refs/heads/{request.source_branch}",
            branch=request.source_branch,
            tag=None,
            sha=head.sha,
            before_sha=before or ZERO_SHA,
            fetch_ref=fetch_ref,
            message=head.message,
            author=head.author,
            timestamp=head.timestamp,
            repository=repository.full_name,
            clone_url=repository.clone_url,
            default_branch=repository.default_branch,
            changed_files=None,
            merge_request=request,
        )


def short_ref(ref: str) -> tuple[str | None, str | None]:
    """`(branch, tag)` of a full ref: `refs/heads/x` -> (x, None), `refs/tags/v1` -> (None, v1)."""
    if ref.startswith("refs/heads/") and len(ref) > len("refs/heads/"):
        return ref[len("refs/heads/") :], None
    if ref.startswith("refs/tags/") and len(ref) > len("refs/tags/"):
        return None, ref[len("refs/tags/") :]
    return None, None


def is_zero_sha(sha: str) -> bool:
    """True for the all-zero id hosts send for a ref that did not or does not exist."""
    return sha.strip("0") == ""


@dataclass(frozen=True)
class Ignored:
    """A verified delivery that asks for no pipeline (ping, deleted branch, closed MR...).

    Answered 202 with `body()`; `reason` says why in words a person reading the host's delivery
    log understands.
    """

    provider: Provider
    delivery_id: str
    event: str
    reason: str

    def body(self) -> dict[str, str]:
        """The JSON body to answer with: `{"ignored": reason}`."""
        return {"ignored": self.reason}


@dataclass(frozen=True)
class RepositoryIdentity:
    """Which repository a delivery is about, read before its signature can be checked.

    The secret that checks the signature belongs to a registered repository, so the caller
    finds that repository from these unverified claims first, then verifies with its secret.
    `clone_urls` holds every URL the payload gives for it (HTTPS, SSH, web), best first.
    """

    provider: Provider
    full_name: str
    clone_urls: tuple[str, ...]

    def matches(self, *, name: str, clone_url: str) -> bool:
        """True when this is the repository registered as `name` with `clone_url`.

        Names compare without regard to case; URLs compare by host and path, so the HTTPS,
        SSH (`git@host:owner/repo.git`) and web forms of one repository are the same.
        """
        if self.full_name.lower() == name.lower():
            return True
        wanted = normalised_url(clone_url)
        return wanted != "" and any(normalised_url(url) == wanted for url in self.clone_urls)


_SCP_LIKE = re.compile(r"^(?:[^@/]+@)?([^:/]+):(?!//)(.*)$")


def normalised_url(url: str) -> str:
    """`host/owner/repo` of a git URL in any of its forms, lowercased; "" when it has none."""
    text = url.strip()
    scp = _SCP_LIKE.match(text) if "://" not in text else None
    if scp is not None:
        host, path = scp.group(1), scp.group(2)
    else:
        try:
            parts = urlsplit(text)
            host, path = parts.hostname or "", parts.path
        except ValueError:
            return ""
    path = path.strip("/").removesuffix(".git").strip("/")
    return f"{host}/{path}".lower() if host and path else ""
