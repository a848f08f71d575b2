"""Commit statuses against a small HTTP server standing in for each git host: every request's
method, path, auth header and body as GitHub, GitLab and Gitea document them; retries with
backoff while the host fails; nothing sent without a token; a whole pipeline reported
pending then success through a real worker."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.web.e2e.conftest import wait_for
from tests.web.test_mirrors import Project
from web.db.pipelines import create_pipeline, set_pipeline_status
from web.db.schemas import PipelineCreate, Provider
from web.orchestration import Services, create_pipeline_for_ref
from web.statuses import StatusDeliveryError, post_commit_status
from web.tasks import COMMIT_STATUS, EmbeddedWorker, KapalCelery

SHA = "0123456789abcdef0123456789abcdef01234567"
TOKEN = "tok-3f9a"


@dataclass
class Seen:
    """One request the host got."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class GitHost:
    """A local HTTP server answering each POST with the next of `answers` (then 201)."""

    url: str = ""
    repository: Path | None = None  # a bare repository served at /acme/shop.git (dumb HTTP)
    seen: list[Seen] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def git_host() -> Iterator[GitHost]:
    """The stand-in git host, on a free port of 127.0.0.1."""
    host = GitHost()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            with host.lock:
                host.seen.append(
                    Seen(
                        "POST",
                        self.path,
                        {k.lower(): v for k, v in self.headers.items()},
                        json.loads(raw) if raw else None,
                    )
                )
                code = host.answers.pop(0) if host.answers else 201
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b"{}")

        def do_GET(self) -> None:
            # git's dumb HTTP protocol: the bare repository's files as they are
            path = self.path.split("?", 1)[0].removeprefix("/acme/shop.git/")
            root = host.repository
            target = (root / path).resolve() if root is not None else None
            if root is None or target is None or not target.is_relative_to(root.resolve()):
                self.send_error(404)
                return
            if not target.is_file():
                self.send_error(404)
                return
            data = target.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    host.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield host
    finally:
        server.shutdown()
        server.server_close()


def _repository(services: Services, host: GitHost, provider: Provider, token: str | None) -> int:
    from web.db.repos import create_repository
    from web.db.schemas import RepositoryCreate

    with services.database.transaction() as session:
        return create_repository(
            session=session,
            cipher=services.cipher(),
            new=RepositoryCreate(
                name="acme/shop",
                clone_url=f"{host.url}/acme/shop.git",
                provider=provider,
                webhook_secret="s",
                status_token=token,
            ),
        ).id


def _pipeline(services: Services, repository_id: int, status: str = "running") -> int:
    with services.database.transaction() as session:
        return create_pipeline(
            session=session,
            new=PipelineCreate(
                repository_id=repository_id, source="push", ref="main", sha=SHA, status=status
            ),
        ).id


Body = Callable[[str, str, str], dict[str, str]]
EXPECTED: dict[Provider, tuple[str, dict[str, str], Body, tuple[str, ...]]] = {
    Provider.GITHUB: (
        f"/api/v3/repos/acme/shop/statuses/{SHA}",
        {"authorization": f"Bearer {TOKEN}", "accept": "application/vnd.github+json"},
        lambda state, url, text: {
            "state": state,
            "target_url": url,
            "description": text,
            "context": "kapal",
        },
        ("pending", "success", "failure", "error"),
    ),
    Provider.GITLAB: (
        f"/api/v4/projects/acme%2Fshop/statuses/{SHA}",
        {"private-token": TOKEN},
        lambda state, url, text: {
            "state": state,
            "ref": "main",
            "name": "kapal",
            "target_url": url,
            "description": text,
        },
        ("running", "success", "failed", "canceled"),
    ),
    Provider.GITEA: (
        f"/api/v1/repos/acme/shop/statuses/{SHA}",
        {"authorization": f"token {TOKEN}"},
        lambda state, url, text: {
            "state": state,
            "target_url": url,
            "description": text,
            "context": "kapal",
        },
        ("pending", "success", "failure", "error"),
    ),
}


@pytest.mark.parametrize("provider", list(EXPECTED))
def test_each_host_gets_the_request_its_api_documents(
    services: Services, git_host: GitHost, provider: Provider
) -> None:
    pipeline_id = _pipeline(services, _repository(services, git_host, provider, TOKEN))
    path, headers, body, states = EXPECTED[provider]
    for status in ("running", "success", "failed", "canceled"):
        with services.database.transaction() as session:
            set_pipeline_status(session=session, pipeline_id=pipeline_id, status=status)
        assert post_commit_status(services=services, pipeline_id=pipeline_id, status=status)
    link = f"{services.settings.server_url}/pipelines/{pipeline_id}"
    assert [s.method for s in git_host.seen] == ["POST"] * 4
    assert {s.path for s in git_host.seen} == {path}
    for seen in git_host.seen:
        assert {k: seen.headers.get(k) for k in headers} == headers
        assert seen.headers["content-type"] == "application/json"
    assert [s.body for s in git_host.seen] == [
        body(state, link, f"kapal pipeline #{pipeline_id}: {status}")
        for state, status in zip(states, ("running", "success", "failed", "canceled"), strict=True)
    ]


def test_no_token_sends_nothing_and_an_outdated_pending_is_dropped(
    services: Services, git_host: GitHost
) -> None:
    without = _pipeline(services, _repository(services, git_host, Provider.GITHUB, None))
    assert post_commit_status(services=services, pipeline_id=without, status="running") is None
    with services.database.transaction() as session:
        from web.db.repos import update_repository
        from web.db.schemas import RepositoryUpdate

        update_repository(
            session=session,
            cipher=services.cipher(),
            repository_id=1,
            changes=RepositoryUpdate(status_token=TOKEN),
        )
    finished = _pipeline(services, 1, status="success")
    assert post_commit_status(services=services, pipeline_id=finished, status="running") is None
    assert git_host.seen == []
    assert post_commit_status(services=services, pipeline_id=finished, status="success")
    assert [s.body["state"] for s in git_host.seen] == ["success"]


def test_a_failing_host_is_tried_again_and_a_refusal_is_not(
    celery_app: KapalCelery, services: Services, git_host: GitHost
) -> None:
    pipeline_id = _pipeline(services, _repository(services, git_host, Provider.GITEA, TOKEN))
    git_host.answers = [502]
    with pytest.raises(StatusDeliveryError, match="answered 502"):
        post_commit_status(services=services, pipeline_id=pipeline_id, status="running")
    # through the task: 503, 429, then taken (eager: the backoff's countdowns are not waited)
    celery_app.conf.task_always_eager = True
    git_host.seen.clear()
    git_host.answers = [503, 429]
    celery_app.tasks[COMMIT_STATUS].apply(args=[pipeline_id, "running"])
    assert len(git_host.seen) == 3
    # a 4xx other than 429 is the host refusing it for good: one request, no retry
    git_host.seen.clear()
    git_host.answers = [422]
    celery_app.tasks[COMMIT_STATUS].apply(args=[pipeline_id, "running"])
    assert len(git_host.seen) == 1


def test_a_pipeline_run_by_a_worker_is_reported_pending_then_success(
    services: Services, worker: EmbeddedWorker, project: Project, git_host: GitHost
) -> None:
    # the stand-in host serves the repository too: statuses go where it is cloned from
    git_host.repository = project.origin
    sha = project.commit({".kapal.yml": "hello:\n  image: busybox:latest\n  script: [echo hi]\n"})
    project.push()
    subprocess.run(["git", "update-server-info"], cwd=project.origin, check=True)
    repository_id = _repository(services, git_host, Provider.GITLAB, TOKEN)
    pipeline_id = create_pipeline_for_ref(
        services=services, repository_id=repository_id, ref="main"
    ).id
    assert wait_for(services, pipeline_id).status == "success"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (
        not git_host.seen or git_host.seen[-1].body["state"] != "success"
    ):
        time.sleep(0.05)
    states = [s.body["state"] for s in git_host.seen]
    # each change is reported (created -> pending/running -> success), the final one last
    assert states[-1] == "success" and states.count("success") == 1, states
    assert set(states[:-1]) <= {"pending", "running"} and states[:-1], states
    assert {s.path for s in git_host.seen} == {f"/api/v4/projects/acme%2Fshop/statuses/{sha}"}
