"""`JobRunner` over the shared stores (fake containers, a real S3 server): a job's artifacts and
cache reach the next job through the bucket, and an upload the store refuses fails the job with
the store's reason instead of losing the files silently."""

from __future__ import annotations

import secrets
from pathlib import Path

from pipeline.plan import ArtifactsSpec, CacheSpec
from runner.artifacts import SharedArtifactStore
from runner.cache import SharedCacheStore
from runner.engine.job_runner import JobRunner
from runner.engine.recorder import JobStatus
from runner.runtime.backend import ContainerSpec
from runner.runtime.fake import FakeBehaviour
from tests.runner.engine.conftest import Harness, job, plan, workspace_of
from tests.support.s3 import S3Server, make_bucket

BUCKET = "kapal-jobs"


def on_worker(harness: Harness, server: S3Server, url: str, name: str, **changes: str) -> None:
    """Point the harness's stores at the object store `url`, as worker `name` would."""
    root = harness.tmp_path / name
    objects = server.store(url, **changes)
    harness.artifacts = SharedArtifactStore(root / "artifacts", objects, scratch=root / "scratch")
    harness.caches = SharedCacheStore(objects, "repo:1", scratch=root / "scratch")


def test_a_job_on_another_worker_gets_artifacts_and_cache_through_the_bucket(
    tmp_path: Path, s3_server: S3Server
) -> None:
    make_bucket(s3_server, BUCKET)
    url = f"s3://{BUCKET}/{secrets.token_hex(6)}"
    cache = (CacheSpec(key="deps", paths=(".deps/",)),)
    build = job("build", "build", artifacts=ArtifactsSpec(paths=("dist/",)), caches=cache)
    test = job("test", "test", needs=("build",), caches=cache)
    the_plan = plan(build, test)

    def builds(spec: ContainerSpec) -> FakeBehaviour:
        workspace = workspace_of(spec)
        (workspace / "dist").mkdir()
        (workspace / "dist" / "app").write_text("built on a\n")
        (workspace / ".deps").mkdir()
        (workspace / ".deps" / "lib").write_text("downloaded once\n")
        return FakeBehaviour()

    seen: dict[str, str] = {}

    def tests(spec: ContainerSpec) -> FakeBehaviour:
        workspace = workspace_of(spec)
        seen["app"] = (workspace / "dist" / "app").read_text()
        seen["lib"] = (workspace / ".deps" / "lib").read_text()
        return FakeBehaviour()

    for name, the_job, behaviour in (("a", build, builds), ("b", test, tests)):
        (tmp_path / name).mkdir()
        harness = Harness(tmp_path / name)
        harness.backend.script(lambda spec, n=the_job.name: spec.name == n, behaviour)
        on_worker(harness, s3_server, url, name)
        outcome = JobRunner(
            the_job,
            plan=the_plan,
            pipeline_id=9,
            job_id=1 if name == "a" else 2,
            source=harness.source,
            work_dir=harness.tmp_path / "work",
            backend=harness.backend,
            images=harness.images,
            artifacts=harness.artifacts,
            caches=harness.caches,
            recorder=harness.recorder,
        ).run()
        harness.artifacts.close()
        assert outcome.status == JobStatus.SUCCESS, (outcome, harness.recorder.log(the_job.name))
    assert seen == {"app": "built on a\n", "lib": "downloaded once\n"}


def test_an_upload_the_store_refuses_fails_the_job_with_its_reason(
    tmp_path: Path, s3_server: S3Server
) -> None:
    make_bucket(s3_server, BUCKET)
    harness = Harness(tmp_path)
    on_worker(harness, s3_server, f"s3://{BUCKET}/x", "a", secret_key="not-the-secret")

    def builds(spec: ContainerSpec) -> FakeBehaviour:
        (workspace_of(spec) / "dist").mkdir()
        (workspace_of(spec) / "dist" / "app").write_text("built\n")
        return FakeBehaviour()

    harness.backend.script(lambda spec: spec.name == "build", builds)
    the_job = job("build", "build", artifacts=ArtifactsSpec(paths=("dist/",)))
    outcome = JobRunner(
        the_job,
        plan=plan(the_job),
        pipeline_id=9,
        job_id=1,
        source=harness.source,
        work_dir=tmp_path / "work",
        backend=harness.backend,
        images=harness.images,
        artifacts=harness.artifacts,
        caches=harness.caches,
        recorder=harness.recorder,
    ).run()
    assert outcome.status == JobStatus.FAILED
    assert outcome.failure_kind == "runner_system_failure"
    assert "refused kapal's credentials" in outcome.reason
    assert "KAPAL_S3_SECRET_KEY" in outcome.reason
