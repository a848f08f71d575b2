"""Artifact expiry on SQLite and PostgreSQL: the time a job's end stamps (`expire_in`, the
KAPAL_ARTIFACTS_EXPIRE_IN default, `never`), and the sweep that removes what is past its time
from the store, keeping the latest successful pipeline of each ref and unfinished pipelines."""

from __future__ import annotations

import secrets
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import update

from runner.artifacts import ArtifactStore, SharedArtifactStore
from runner.engine.recorder import JobStatus
from tests.support.s3 import S3Server, make_bucket
from tests.web.service_support import KeptJobs
from tests.web.test_mirrors import Project
from web.artifact_expiry import expire_artifacts
from web.db.clock import database_now
from web.db.jobs import claim_job, create_jobs, get_job, list_jobs, retry_job
from web.db.models import Job, Pipeline
from web.db.pipelines import create_pipeline
from web.db.results import add_artifact, list_artifacts
from web.db.schemas import ArtifactCreate, JobCreate, JobRead, PipelineCreate, RepositoryRead
from web.heartbeats import Heartbeat
from web.orchestration import JobEnd, Services, create_pipeline_for_ref, finish_job
from web.settings import Settings

PAST = timedelta(hours=1)
BUCKET = "kapal-expiry"


def _services(services: Services, *, artifacts_expire_in: str) -> Services:
    """`services` with another KAPAL_ARTIFACTS_EXPIRE_IN (the same database and dispatcher)."""
    changed = Settings(
        data_dir=services.settings.data_dir,
        database_url=services.database.url,
        secret_key=SecretStr("k"),
        artifacts_expire_in=artifacts_expire_in,
    )
    return Services(settings=changed, database=services.database, dispatcher=services.dispatcher)


def _save(services: Services, job: JobRead, text: str = "made") -> Path:
    """Play the worker's recorder: keep `out/app.txt` as the job's artifacts; return the tree."""
    workspace = services.settings.data_dir / f"workspace-{job.id}"
    (workspace / "out").mkdir(parents=True)
    (workspace / "out" / "app.txt").write_text(text)
    store = ArtifactStore(services.settings.artifacts_dir)
    stored = store.save(job.pipeline_id, job.name, workspace, ["out/app.txt"])
    with services.database.transaction() as session:
        add_artifact(
            session=session,
            job_id=job.id,
            artifact=ArtifactCreate(
                name=job.name,
                path=f"{job.pipeline_id}/{job.name}",
                files=list(stored.files),
                size=stored.size,
                sha256="0" * 64,
            ),
        )
    return store.job_dir(job.pipeline_id, job.name)


def _job(services: Services, job_id: int) -> JobRead:
    with services.database.transaction() as session:
        job = get_job(session=session, job_id=job_id)
    assert job is not None
    return job


EXPIRING = """
image: busybox:latest
weekly: {script: ["true"], artifacts: {paths: [out/], expire_in: 1 week}}
default-time: {script: ["true"], artifacts: {paths: [out/]}}
kept: {script: ["true"], artifacts: {paths: [out/], expire_in: never}}
nothing: {script: ["true"], artifacts: {paths: [out/], expire_in: 2 days}}
"""


@pytest.mark.parametrize("default", [None, "2 hours", "never"])
def test_a_jobs_end_stamps_when_its_artifacts_expire(
    services: Services, project: Project, repository: RepositoryRead, default: str | None
) -> None:
    if default is not None:
        services = _services(services, artifacts_expire_in=default)
    project.commit({".kapal.yml": EXPIRING})
    project.push()
    pipeline = create_pipeline_for_ref(services=services, repository_id=repository.id, ref="main")
    with services.database.transaction() as session:
        jobs = {j.name: j for j in list_jobs(session=session, pipeline_id=pipeline.id)}
    for name, job in jobs.items():
        with services.database.transaction() as session:
            assert claim_job(session=session, job_id=job.id, worker="w")
        if name != "nothing":  # it kept no artifacts (none matched)
            _save(services, job)
        finish_job(services=services, job_id=job.id, end=JobEnd(JobStatus.SUCCESS, 0))

    ended = {name: _job(services, job.id) for name, job in jobs.items()}

    def kept_for(name: str) -> timedelta | None:
        job = ended[name]
        if job.artifacts_expire_at is None:
            return None
        assert job.finished_at is not None
        return job.artifacts_expire_at - job.finished_at

    def near(span: timedelta | None, expected: timedelta) -> bool:
        return span is not None and abs(span - expected) < timedelta(seconds=30)

    assert near(kept_for("weekly"), timedelta(days=7))
    assert kept_for("kept") is None  # expire_in: never
    assert kept_for("nothing") is None  # no artifacts: nothing to expire
    if default is None:  # KAPAL_ARTIFACTS_EXPIRE_IN's default: 30 days
        assert near(kept_for("default-time"), timedelta(days=30))
    elif default == "2 hours":
        assert near(kept_for("default-time"), timedelta(hours=2))
    else:
        assert kept_for("default-time") is None
    with services.database.transaction() as session:
        (artifact,) = list_artifacts(session=session, job_id=jobs["weekly"].id)
    assert artifact.expire_at == ended["weekly"].artifacts_expire_at
    assert not any(job.artifacts_expired for job in ended.values())


class Scene:
    """Pipelines recorded straight in the database, their jobs' artifacts saved in the store."""

    def __init__(self, services: Services, repository_id: int) -> None:
        self.services = services
        self.repository_id = repository_id

    def pipeline(
        self,
        *,
        ref: str = "main",
        status: str = "success",
        expire_in: timedelta = -PAST,
        parent_job_id: int | None = None,
        names: tuple[str, ...] = ("build",),
    ) -> list[JobRead]:
        """A pipeline of `status` whose jobs kept artifacts expiring `expire_in` from now."""
        with self.services.database.transaction() as session:
            made = create_pipeline(
                session=session,
                new=PipelineCreate(
                    repository_id=self.repository_id,
                    source="push",
                    ref=ref,
                    sha="a" * 40,
                    status=status,
                    parent_job_id=parent_job_id,
                ),
            )
            jobs = create_jobs(
                session=session,
                pipeline_id=made.id,
                jobs=[
                    JobCreate(name=name, stage="test", position=i, status="success")
                    for i, name in enumerate(names)
                ],
            )
        for job in jobs:
            _save(self.services, job, f"{job.name} of pipeline {made.id}")
            self.expire(job.id, expire_in)
        return jobs

    def expire(self, job_id: int, expire_in: timedelta) -> None:
        """Have the job's artifacts expire `expire_in` from now (negative: in the past)."""
        with self.services.database.transaction() as session:
            moment = database_now(session) + expire_in
            session.execute(update(Job).where(Job.id == job_id).values(artifacts_expire_at=moment))

    def tree(self, job: JobRead) -> Path:
        """Where the store keeps the job's artifacts."""
        return ArtifactStore(self.services.settings.artifacts_dir).job_dir(
            job.pipeline_id, job.name
        )

    def sweep(self) -> list[int]:
        """One expiry sweep."""
        return expire_artifacts(settings=self.services.settings, database=self.services.database)


@pytest.fixture
def scene(services: Services, repository: RepositoryRead) -> Scene:
    """Pipelines of `repository` with artifacts in the store."""
    return Scene(services, repository.id)


def test_the_sweep_removes_what_expired_and_keeps_the_rest(
    scene: Scene, services: Services
) -> None:
    (old_main,) = scene.pipeline()
    (latest_main,) = scene.pipeline()  # the latest successful pipeline of main: kept
    (failed_main,) = scene.pipeline(status="failed")  # newer, but not successful
    (feature,) = scene.pipeline(ref="feature", status="failed")  # no success on feature
    (running,) = scene.pipeline(status="running")  # a later job may still need it
    (young,) = scene.pipeline(ref="other", status="failed", expire_in=timedelta(days=1))
    (forever,) = scene.pipeline(ref="other", status="failed")
    with services.database.transaction() as session:  # expire_in: never
        session.execute(update(Job).where(Job.id == forever.id).values(artifacts_expire_at=None))

    removed = scene.sweep()

    assert sorted(removed) == sorted([old_main.id, failed_main.id, feature.id])
    for job in (old_main, failed_main, feature):
        assert not scene.tree(job).exists()
        assert _job(services, job.id).artifacts_expired
    for job in (latest_main, running, young, forever):
        assert (scene.tree(job) / "out" / "app.txt").is_file()
        assert not _job(services, job.id).artifacts_expired
    assert not scene.tree(old_main).parent.exists()  # the pipeline's empty directory too

    assert scene.sweep() == []  # idempotent: nothing left to do

    # a newer successful pipeline of main: the one kept until now may go
    scene.pipeline(expire_in=timedelta(days=1))
    assert scene.sweep() == [latest_main.id]
    assert not scene.tree(latest_main).exists()


def test_pipelines_whose_parent_runs_keep_their_artifacts(scene: Scene) -> None:
    (trigger,) = scene.pipeline(status="running", names=("child",))
    (child_job,) = scene.pipeline(ref="main", status="failed", parent_job_id=trigger.id)
    assert scene.sweep() == []  # the child ended, its parent runs on
    assert scene.tree(child_job).is_dir() and scene.tree(trigger).is_dir()
    with scene.services.database.transaction() as session:  # the parent ends
        session.execute(
            update(Pipeline).where(Pipeline.id == trigger.pipeline_id).values(status="failed")
        )
    assert sorted(scene.sweep()) == sorted([trigger.id, child_job.id])


def test_the_child_of_the_latest_successful_pipeline_keeps_its_artifacts(scene: Scene) -> None:
    (trigger,) = scene.pipeline(names=("child",))
    (child_job,) = scene.pipeline(status="success", parent_job_id=trigger.id)
    assert scene.sweep() == []
    assert scene.tree(child_job).is_dir()


def test_an_older_attempt_expiring_leaves_the_files_of_a_later_one(
    scene: Scene, services: Services
) -> None:
    (first,) = scene.pipeline(status="failed")
    with services.database.transaction() as session:
        second = retry_job(session=session, job_id=first.id, status="success")
    _save(services, second, "the second attempt's")
    scene.expire(second.id, timedelta(days=1))

    assert scene.sweep() == [first.id]  # its files were replaced by the second attempt's
    assert (scene.tree(second) / "out" / "app.txt").read_text() == "the second attempt's"

    scene.expire(second.id, -PAST)
    assert scene.sweep() == [second.id]
    assert not scene.tree(second).exists()


def test_two_sweeps_at_once_remove_each_artifact_once(scene: Scene) -> None:
    jobs = [job for _ in range(3) for job in scene.pipeline(status="failed", names=("a", "b"))]
    barrier = threading.Barrier(2)
    results: list[list[int]] = []
    errors: list[BaseException] = []

    def sweep() -> None:
        try:
            barrier.wait()
            results.append(scene.sweep())
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    first, second = results
    assert not set(first) & set(second)  # each claimed by one sweep only
    assert sorted(first + second) == sorted(job.id for job in jobs)
    assert not any(scene.tree(job).exists() for job in jobs)


def test_the_sweep_never_follows_a_symlink_out_of_the_store(
    scene: Scene, services: Services, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    (outside / "keep").mkdir(parents=True)
    (outside / "keep" / "precious").write_text("host data")
    workspace = tmp_path / "evil-workspace"
    workspace.mkdir()
    (workspace / "escape").symlink_to(outside)
    (job,) = scene.pipeline(status="failed")
    ArtifactStore(services.settings.artifacts_dir).save(
        job.pipeline_id, job.name, workspace, ["escape"]
    )
    assert (scene.tree(job) / "escape").is_symlink()

    assert scene.sweep() == [job.id]
    assert not scene.tree(job).exists()
    assert (outside / "keep" / "precious").read_text() == "host data"


def test_a_workers_heartbeat_sweeps_in_a_thread_of_its_own(
    scene: Scene, services: Services, kept: KeptJobs
) -> None:
    (job,) = scene.pipeline(status="failed")
    heartbeat = Heartbeat(
        services, name="sweeper", queues=["kapal"], concurrency=1, first_expiry_after=0.0
    )
    thread = heartbeat.expire_artifacts_when_due()
    assert thread is not None
    thread.join(60)
    assert not thread.is_alive()
    assert _job(services, job.id).artifacts_expired
    assert not scene.tree(job).exists()
    assert heartbeat.expire_artifacts_when_due() is None  # not due again for a while


def test_with_an_object_store_one_worker_removes_the_blob_and_each_its_own_copy(
    services: Services, repository: RepositoryRead, s3_server: S3Server, tmp_path: Path
) -> None:
    make_bucket(s3_server, BUCKET)
    url = f"s3://{BUCKET}/run-{secrets.token_hex(6)}"

    def machine(name: str) -> Services:
        settings = Settings(
            data_dir=tmp_path / name,
            database_url=services.database.url,
            secret_key=SecretStr("k"),
            object_store=url,
            s3_endpoint=s3_server.endpoint,
            s3_access_key=SecretStr(s3_server.access_key),
            s3_secret_key=SecretStr(s3_server.secret_key),
            s3_region="us-east-1",
        )
        return Services(settings=settings, database=services.database, dispatcher=KeptJobs())

    ran_it, other = machine("worker-a"), machine("worker-b")
    scene = Scene(ran_it, repository.id)
    (job,) = scene.pipeline(status="success", expire_in=timedelta(days=1))
    objects = s3_server.store(url)
    store = SharedArtifactStore(
        ran_it.settings.artifacts_dir, objects, scratch=tmp_path / "scratch"
    )
    workspace = tmp_path / "workspace"
    (workspace / "out").mkdir(parents=True)
    (workspace / "out" / "app.txt").write_text("uploaded")
    store.save(job.pipeline_id, job.name, workspace, ["out/app.txt"])  # as worker A's job did
    key = SharedArtifactStore.object_key(job.pipeline_id, job.name)
    scene.pipeline(status="success", expire_in=timedelta(days=1))  # a newer success on main
    scene.expire(job.id, -PAST)
    assert objects.exists(key)

    swept = expire_artifacts(settings=other.settings, database=other.database)

    assert swept == [job.id]
    assert not objects.exists(key)
    assert scene.tree(job).is_dir()  # worker A's own copy: A removes it
    assert expire_artifacts(settings=ran_it.settings, database=ran_it.database) == []
    assert not scene.tree(job).exists()


def test_a_store_that_refuses_leaves_the_artifacts_for_a_later_sweep(
    scene: Scene, services: Services, tmp_path: Path
) -> None:
    jobs = [job for _ in range(2) for job in scene.pipeline(status="failed")]
    refusing = Settings(
        data_dir=services.settings.data_dir,
        database_url=services.database.url,
        secret_key=SecretStr("k"),
        object_store=str(tmp_path / "not-a-store"),
    )
    (tmp_path / "not-a-store").write_text("a file where the store's directory should be")

    assert expire_artifacts(settings=refusing, database=services.database) == []
    for job in jobs:  # the claim released: nothing marked, nothing lost
        assert not _job(services, job.id).artifacts_expired
        assert scene.tree(job).is_dir()

    assert sorted(scene.sweep()) == sorted(job.id for job in jobs)
