"""Commit statuses: a pipeline's status reported back to its git host, as GitHub, GitLab and
Gitea each document it, when the repository has a status token.

    pipeline status changes (web.orchestration) ─► dispatcher.commit_status(id, status)
        ─► task `kapal.commit_status` (a Celery message: the pipeline never waits for it)
        ─► post_commit_status: one POST with httpx; a 5xx, 429 or network error is retried by
           the task with exponential backoff, a 4xx is logged and dropped

    GitHub  POST {api}/repos/{owner}/{repo}/statuses/{sha}   Authorization: Bearer TOKEN
            {"state": pending|success|failure|error, "target_url", "description", "context"}
    GitLab  POST {host}/api/v4/projects/{url-encoded path}/statuses/{sha}   PRIVATE-TOKEN: TOKEN
            {"state": pending|running|success|failed|canceled|skipped, "ref", "name",
             "target_url", "description"}
    Gitea   POST {host}/api/v1/repos/{owner}/{repo}/statuses/{sha}   Authorization: token TOKEN
            {"state": pending|success|error|failure|warning, "target_url", "description",
             "context"}

The API's address comes from the repository's clone URL (`https://api.github.com` for
github.com, `{host}/api/v3` for GitHub Enterprise). A status message for a pipeline that has
finished since is dropped unless it is the final one, so a retried "pending" never overwrites a
"success" sent meanwhile. Redirects are not followed: the token goes to that host only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from web.db.pipelines import get_pipeline
from web.db.repos import get_repository, get_repository_credentials
from web.orchestration import Services

log = logging.getLogger(__name__)

CONTEXT = "kapal"
TIMEOUT = 10.0  # seconds for one request
FINISHED = frozenset({"success", "failed", "canceled", "skipped"})
_STATES: dict[str, dict[str, str]] = {
    # kapal's pipeline status -> each host's state
    "github": {"running": "pending", "failed": "failure", "canceled": "error"},
    "gitea": {"running": "pending", "failed": "failure", "canceled": "error"},
    "gitlab": {},
}


class StatusDeliveryError(Exception):
    """The git host did not take the status for a reason that may pass (5xx, 429, network);
    the task sending it tries again later. Not a `WebError`: no client ever sees it."""


@dataclass(frozen=True)
class StatusRequest:
    """One HTTP request reporting a status, as the host's API documents it."""

    method: str
    url: str
    headers: dict[str, str]
    body: dict[str, Any]


def host_state(provider: str, status: str) -> str:
    """The state the host `provider` knows for kapal's pipeline `status`."""
    if status not in FINISHED and status != "running":
        status = "pending"  # created, pending, manual, scheduled...
    if provider != "gitlab" and status == "skipped":
        return "success"
    return _STATES[provider].get(status, status)


def api_root(provider: str, clone_url: str) -> str:
    """The root of the host's REST API, from a repository's clone URL
    (`https://host/x.git`, `ssh://git@host/x.git` or `git@host:x.git`)."""
    if "://" not in clone_url and "@" in clone_url and ":" in clone_url:
        clone_url = "ssh://" + clone_url.replace(":", "/", 1)
    parts = urlsplit(clone_url)
    host = parts.hostname or ""
    if not host:
        raise ValueError(f"cannot tell the git host of clone URL {clone_url!r}")
    scheme = parts.scheme if parts.scheme in ("http", "https") else "https"
    port = f":{parts.port}" if parts.port and scheme == parts.scheme else ""
    base = f"{scheme}://{host}{port}"
    if provider == "github":
        return "https://api.github.com" if host == "github.com" else f"{base}/api/v3"
    if provider == "gitlab":
        return f"{base}/api/v4"
    return f"{base}/api/v1"


def status_request(
    *,
    provider: str,
    clone_url: str,
    repository: str,
    sha: str,
    ref: str,
    token: str,
    status: str,
    target_url: str,
    description: str,
) -> StatusRequest:
    """The request reporting `status` of commit `sha` of `repository` ("owner/name")."""
    root = api_root(provider, clone_url)
    state = host_state(provider, status)
    description = description[:140]  # GitHub's limit
    if provider == "gitlab":
        return StatusRequest(
            "POST",
            f"{root}/projects/{quote(repository, safe='')}/statuses/{sha}",
            {"PRIVATE-TOKEN": token},
            {
                "state": state,
                "ref": ref,
                "name": CONTEXT,
                "target_url": target_url,
                "description": description,
            },
        )
    owner_repo = "/".join(quote(part, safe="") for part in repository.split("/", 1))
    headers = (
        {
            "Authorization": f"Bearer {token}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
        }
        if provider == "github"
        else {"Authorization": f"token {token}"}
    )
    return StatusRequest(
        "POST",
        f"{root}/repos/{owner_repo}/statuses/{sha}",
        headers,
        {
            "state": state,
            "target_url": target_url,
            "description": description,
            "context": CONTEXT,
        },
    )


def post_commit_status(
    *, services: Services, pipeline_id: int, status: str, client: httpx.Client | None = None
) -> StatusRequest | None:
    """Report `status` of the pipeline to its git host; the request sent, or None when there
    is nothing to send (no token, the pipeline gone, or finished since this non-final status).

    Raises StatusDeliveryError when the host may take it later (5xx, 429, network error).
    """
    with services.database.transaction() as session:
        pipeline = get_pipeline(session=session, pipeline_id=pipeline_id)
        if pipeline is None:
            return None
        repository = get_repository(session=session, repository_id=pipeline.repository_id)
        if repository is None:
            return None
        token = get_repository_credentials(
            session=session, cipher=services.cipher(), repository_id=repository.id
        ).status_token
    if not token:
        return None
    if status not in FINISHED and pipeline.status in FINISHED:
        return None  # outdated: the final status is (or will be) sent by its own message
    request = status_request(
        provider=repository.provider.value,
        clone_url=repository.clone_url,
        repository=repository.name,
        sha=pipeline.sha,
        ref=pipeline.ref,
        token=token,
        status=status,
        target_url=f"{services.settings.server_url}/pipelines/{pipeline_id}",
        description=f"kapal pipeline #{pipeline_id}: {status}",
    )
    own = client is None
    client = client or httpx.Client(timeout=TIMEOUT, follow_redirects=False)
    try:
        answer = client.request(
            request.method, request.url, headers=request.headers, json=request.body
        )
    except httpx.HTTPError as exc:
        raise StatusDeliveryError(f"{request.url}: {type(exc).__name__}: {exc}") from exc
    finally:
        if own:
            client.close()
    if answer.status_code >= 500 or answer.status_code == 429:
        raise StatusDeliveryError(f"{request.url}: answered {answer.status_code}")
    if answer.status_code >= 300:
        log.warning(
            "pipeline %s: %s refused its commit status (%s): %s",
            pipeline_id,
            request.url,
            answer.status_code,
            answer.text[:200],
        )
    return request
