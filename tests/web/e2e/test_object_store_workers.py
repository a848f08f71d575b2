"""Two real `kapal worker` processes with no directory in common pass a job's artifacts and
cache to a later job through an S3-compatible server (KAPAL_OBJECT_STORE), and a worker (or
server) whose object store cannot be used refuses to start with one line naming the setting."""

from __future__ import annotations

import itertools
import secrets
import subprocess
import sys
from pathlib import Path

from tests.support.s3 import S3Server, make_bucket
from tests.web.e2e import test_workers as workers_tests
from tests.web.e2e.conftest import wait_for
from tests.web.e2e.test_workers import Workers, _wait_registered
from tests.web.test_mirrors import Project
from web.db.schemas import RepositoryRead
from web.orchestration import Services, create_pipeline_for_ref

# the fixtures of the workers' tests: PostgreSQL + Redis and `kapal worker` processes
app = workers_tests.app
services = workers_tests.services
settings = workers_tests.settings
workers = workers_tests.workers
repository = workers_tests.repository

BUCKET = "kapal-e2e"

PIPELINE = """
stages: [build, test]
make:
  stage: build
  tags: [builder]
  image: busybox:latest
  script:
    - mkdir -p out .cache
    - echo made on builder > out/made.txt
    - ln -s /etc out/host
    - echo kept > .cache/c
  artifacts: {paths: [out/]}
  cache: {key: shared, paths: [.cache/]}
use:
  stage: test
  tags: [tester]
  image: busybox:latest
  cache: {key: shared, paths: [.cache/]}
  script: [cat out/made.txt, cat .cache/c, readlink out/host]
"""


def test_workers_with_no_shared_disk_pass_artifacts_and_caches_through_s3(
    tmp_path: Path,
    s3_server: S3Server,
    services: Services,
    workers: Workers,
    project: Project,
    repository: RepositoryRead,
) -> None:
    from web.db.logs import read_log

    make_bucket(s3_server, BUCKET)
    prefix = f"run-{secrets.token_hex(6)}"
    workers.env.update(s3_server.settings(f"s3://{BUCKET}/{prefix}"))
    workers.start("builder", "builder")
    workers.start("tester", "tester")
    _wait_registered(services, "builder", "tester")
    project.commit({".kapal.yml": PIPELINE})
    project.push()
    pipeline_id = create_pipeline_for_ref(
        services=services, repository_id=repository.id, ref="main"
    ).id
    detail = wait_for(services, pipeline_id, timeout=300)
    jobs = {j.name: j for j in detail.jobs}
    assert detail.status == "success", (detail.jobs, workers.output("tester"))
    assert {n: j.worker for n, j in jobs.items()} == {"make": "builder", "use": "tester"}
    with services.database.transaction() as session:
        lines = read_log(session=session, job_id=jobs["use"].id).lines
    assert {"made on builder", "kept", "/etc"} <= set(lines), lines

    listed = s3_server.client().list_objects(BUCKET, prefix=prefix, recursive=True)
    keys = {o.object_name for o in listed}
    assert f"{prefix}/artifacts/{pipeline_id}/make.tar.gz" in keys, keys
    assert any(k.startswith(f"{prefix}/caches/repo-") for k in keys if k), keys
    # nothing went through a directory the two share: the tester kept nothing of the builder's
    tester = workers.data_dir("tester")
    assert not (tester / "artifacts").exists()
    assert not (tester / "cache").exists()
    assert not list((tester / "work").glob("job-*/store/artifacts"))


def test_a_worker_or_server_whose_object_store_refuses_it_does_not_start(
    tmp_path: Path, s3_server: S3Server, migrated_sqlite: Path
) -> None:
    import shutil

    make_bucket(s3_server, BUCKET)
    data = tmp_path / "data"
    data.mkdir()
    shutil.copyfile(migrated_sqlite, data / "kapal.db")
    cases = {
        "KAPAL_S3_SECRET_KEY": {"KAPAL_S3_SECRET_KEY": "not-the-secret"},
        "KAPAL_OBJECT_STORE": {"KAPAL_OBJECT_STORE": "s3://kapal-no-such-bucket"},
    }
    # each verb's own way of refusing its settings: exit status and prefix
    commands = {
        ("worker", "-n", "refused"): (2, "error: "),
        ("serve", "--port", "0"): (1, "kapal serve: "),
    }
    for (named, changes), (command, (status, prefix)) in itertools.product(
        cases.items(), commands.items()
    ):
        env = {
            **s3_server.settings(f"s3://{BUCKET}/x"),
            **changes,
            "KAPAL_DATA_DIR": str(data),
            "KAPAL_ENCRYPTION_KEY": "test key",
            "PATH": "/usr/bin:/bin",
        }
        done = subprocess.run(
            [sys.executable, "-m", "web.cli", *command],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == status, done.stderr
        assert done.stderr.startswith(prefix), done.stderr
        assert named in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert "not-the-secret" not in done.stderr
