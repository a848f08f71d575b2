"""What a claimed job runs under, read from the database (`web.execution.load_context`), on
SQLite and PostgreSQL: a fork's merge request gets no secret and builds apart; a push to the
default branch gets the protected secrets; a branch only the unprotected ones."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tests.web.service_support import kept_services, register
from tests.web.test_mirrors import Project, git
from tests.web.test_orchestration import FAN_IN, _trigger
from web.db.jobs import list_jobs
from web.db.schemas import RepositoryRead
from web.db.secrets import set_secret
from web.db.session import Database
from web.execution import JobContext, load_context
from web.hooks.trigger import MergeRequest
from web.orchestration import Services, create_pipeline_from_trigger


@pytest.fixture
def services(database: Database, tmp_path: Path) -> Services:
    return kept_services(database, tmp_path / "data")


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path / "repos")


@pytest.fixture
def repository(services: Services, project: Project) -> RepositoryRead:
    repository = register(services, project, protected_refs=["refs/heads/release/*"])
    with services.database.transaction() as session:
        for name, protected in (("DEPLOY_TOKEN", True), ("PUBLIC_TOKEN", False)):
            set_secret(
                session=session,
                cipher=services.cipher(),
                repository_id=repository.id,
                name=name,
                value=f"{name.lower()}-value-123",
                protected=protected,
            )
    return repository


def _context(services: Services, repository: RepositoryRead, trigger: object) -> JobContext:
    outcome = create_pipeline_from_trigger(
        services=services,
        repository_id=repository.id,
        trigger=trigger,  # type: ignore[arg-type]
    )
    assert outcome.pipeline is not None, outcome.ignored
    with services.database.transaction() as session:
        job = list_jobs(session=session, pipeline_id=outcome.pipeline.id)[0]
    return load_context(services=services, job_id=job.id)


def test_the_default_branch_gets_every_secret_and_a_branch_the_unprotected_ones(
    services: Services, project: Project, repository: RepositoryRead
) -> None:
    sha = project.commit({".kapal.yml": FAN_IN})
    project.push()
    project.push("HEAD:refs/heads/feature")
    project.push("HEAD:refs/heads/release/1.0")
    main = _context(services, repository, _trigger(sha))
    assert main.secrets == {
        "DEPLOY_TOKEN": "deploy_token-value-123",
        "PUBLIC_TOKEN": "public_token-value-123",
    }
    assert (main.owner, main.protected, main.allow_host_network) == (
        f"repo:{repository.id}",
        True,
        False,
    )
    feature = _context(services, repository, _trigger(sha, "refs/heads/feature", "d-f"))
    assert feature.secrets == {"PUBLIC_TOKEN": "public_token-value-123"}
    assert not feature.protected
    release = _context(services, repository, _trigger(sha, "refs/heads/release/1.0", "d-r"))
    assert "DEPLOY_TOKEN" in release.secrets and release.protected


def test_a_merge_request_from_a_fork_gets_no_secret_and_its_own_owner(
    services: Services, project: Project, repository: RepositoryRead
) -> None:
    base = project.commit({".kapal.yml": FAN_IN})
    project.push()
    head = project.commit({"feature.txt": "from a fork\n"})
    git(project.work, "push", "-q", "origin", "HEAD:refs/pull/7/head")
    request = MergeRequest(
        iid=7,
        action="opened",
        title="a change from outside",
        source_branch="feature",
        target_branch="main",
        source_sha=head,
        target_sha=base,
        source_repository="mallory/shop",
        source_clone_url="https://git.example/mallory/shop.git",
        target_repository="acme/shop",
        from_fork=True,
    )
    trigger = dataclasses.replace(
        _trigger(head, "refs/heads/feature", "d-mr"),
        kind="merge_request",
        fetch_ref="refs/pull/7/head",
        merge_request=request,
    )
    context = _context(services, repository, trigger)
    assert context.secrets == {}
    assert context.owner == f"repo:{repository.id}:fork:mallory/shop"
    assert not context.protected
    assert (context.sha, context.fetch_ref) == (head, "refs/pull/7/head")
