"""Many workers on PostgreSQL + Redis, each a real `kapal worker` process: jobs routed by their
`tags:`, a job no worker serves waits with its reason, a worker SIGKILLed mid-job is found lost
by the other's heartbeat sweep (its job failed "worker lost" and retried), cancel reaches the
process running the job, and a worker restarted in the same place cleans what it left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from pydantic import SecretStr

from runner.images import ImageStore, bootstrap_busybox
from runner.runtime.environment import RuntimeEnvironment
from runner.runtime.paths import RuntimePaths
from tests.support.registry import free_port
from tests.web.e2e.conftest import wait_for
from tests.web.service_support import register
from tests.web.test_mirrors import Project
from web.db.models import Worker
from web.db.schemas import JobRead, PipelineDetail, RepositoryRead
from web.orchestration import Services, cancel_pipeline, create_pipeline_for_ref
from web.settings import Settings
from web.tasks import KapalCelery, create_celery

LOST_DEADLINE = 60.0  # the functional deadline for "worker lost"
KEY = "test key"


class Workers:
    """`kapal worker` processes on one database and broker, each with a data dir of its own
    (another machine, as far as files go) sharing the session's image store."""

    def __init__(self, root: Path, image_store: ImageStore, database_url: str, broker: str):
        self.root = root
        self.image_store = image_store
        self.env = dict(
            os.environ,
            KAPAL_DATABASE_URL=database_url,
            KAPAL_BROKER_URL=broker,
            KAPAL_ENCRYPTION_KEY=KEY,
            KAPAL_LOG_FLUSH_INTERVAL="0.1",
        )
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def data_dir(self, name: str, *, own_images: bool = False) -> Path:
        """The data dir of the worker `name`, made with the session's image store linked in,
        or with an image store of its own holding only busybox (`own_images`)."""
        path = self.root / name
        if not path.exists():
            path.mkdir(parents=True)
            if own_images:
                bootstrap_busybox(ImageStore(path / "images"), "busybox:latest")
            else:
                (path / "images").symlink_to(self.image_store.root)
        return path

    def start(self, name: str, *queues: str) -> subprocess.Popen[bytes]:
        """Start `kapal worker -n NAME --queues ...`, its output in `<root>/<name>.log`."""
        self.data_dir(name)
        log = (self.root / f"{name}.log").open("ab")
        args = [sys.executable, "-m", "web.cli", "worker", "-n", name, "--concurrency", "2"]
        args += [a for q in queues for a in ("--queues", q)]
        process = subprocess.Popen(
            args,
            env=dict(self.env, KAPAL_DATA_DIR=str(self.data_dir(name))),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.processes[name] = process
        return process

    def stop_all(self) -> None:
        """SIGTERM each worker still running, SIGKILL it if it does not end."""
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def output(self, name: str) -> str:
        """What the worker printed so far."""
        return (self.root / f"{name}.log").read_text(errors="replace")


@pytest.fixture
def settings(
    tmp_path: Path, database_url_postgres: str, redis_url: str, image_store: ImageStore
) -> Settings:
    """The test process's settings: PostgreSQL and a flushed Redis (no worker of its own)."""
    redis.Redis.from_url(redis_url).flushdb()
    data_dir = tmp_path / "web"
    data_dir.mkdir()
    return Settings(
        data_dir=data_dir,
        secret_key=SecretStr(KEY),
        database_url=database_url_postgres,
        broker_url=redis_url,
    )


@pytest.fixture
def app(settings: Settings) -> Iterator[KapalCelery]:
    """The web side's Celery app (sends jobs, runs none)."""
    made = create_celery(settings)
    try:
        yield made
    finally:
        made.services.database.dispose()


@pytest.fixture
def services(app: KapalCelery) -> Services:
    """The service layer of the web side."""
    return app.services


@pytest.fixture
def workers(
    tmp_path: Path, settings: Settings, image_store: ImageStore, busybox_image: str
) -> Iterator[Workers]:
    """A place to start `kapal worker` processes; each is stopped after the test."""
    started = Workers(tmp_path / "workers", image_store, settings.database_url, settings.broker_url)
    try:
        yield started
    finally:
        started.stop_all()


@pytest.fixture
def repository(services: Services, project: Project) -> RepositoryRead:
    """`acme/shop` on the local bare repository."""
    return register(services, project)


def _start(services: Services, project: Project, repository: RepositoryRead, text: str) -> int:
    project.commit({".kapal.yml": text})
    project.push()
    return create_pipeline_for_ref(services=services, repository_id=repository.id, ref="main").id


def _wait_registered(services: Services, *names: str, timeout: float = 120.0) -> None:
    from sqlalchemy import select

    deadline = time.monotonic() + timeout
    while True:
        with services.database.transaction() as session:
            seen = set(session.scalars(select(Worker.name).where(Worker.stopped_at.is_(None))))
        if set(names) <= seen:
            return
        assert time.monotonic() < deadline, f"workers {names} not registered (seen {seen})"
        time.sleep(0.1)


def _job(detail: PipelineDetail, name: str, attempt: int | None = None) -> JobRead:
    attempts = [j for j in detail.jobs if j.name == name]
    if attempt is None:
        return attempts[-1]
    return next(j for j in attempts if j.attempt == attempt)


def _until(name: str, check: Callable[[JobRead], bool]) -> Callable[[PipelineDetail], bool]:
    return lambda detail: any(j.name == name and check(j) for j in detail.jobs)


def test_jobs_go_to_the_worker_serving_their_tags_and_unserved_ones_say_why(
    services: Services, workers: Workers, project: Project, repository: RepositoryRead
) -> None:
    workers.start("plain", "kapal")
    workers.start("gpu-box", "gpu", "linux")
    _wait_registered(services, "plain", "gpu-box")
    pipeline_id = _start(
        services,
        project,
        repository,
        "untagged:\n  image: busybox:latest\n  script: [echo plain]\n"
        "gpu:\n  image: busybox:latest\n  tags: [gpu]\n  script: [echo gpu]\n"
        "both:\n  image: busybox:latest\n  tags: [linux, gpu]\n  script: [echo both]\n"
        "arm:\n  image: busybox:latest\n  tags: [arm, gpu]\n  script: [echo arm]\n",
    )
    detail = wait_for(
        services,
        pipeline_id,
        lambda d: all(_job(d, n).status == "success" for n in ("untagged", "gpu", "both")),
        timeout=180,
    )
    assert _job(detail, "untagged").worker == "plain"
    assert _job(detail, "gpu").worker == "gpu-box"
    assert _job(detail, "both").worker == "gpu-box"
    assert _job(detail, "gpu").tags == ["gpu"]
    arm = _job(detail, "arm")
    assert arm.status == "pending" and arm.worker is None
    assert arm.reason == (
        "waiting for a worker serving tags arm, gpu: none of the 2 live worker(s) does; "
        "start one with `kapal worker --queues arm,gpu`"
    )
    # as the REST API shows it
    import warnings

    from starlette.exceptions import StarletteDeprecationWarning

    from web.app import create_app

    with warnings.catch_warnings():  # Starlette's TestClient prefers httpx2; it takes httpx
        warnings.simplefilter("ignore", StarletteDeprecationWarning)
        from fastapi.testclient import TestClient

    with TestClient(create_app(services.settings, services=services)) as client:
        shown = client.get(f"/api/v1/pipelines/{pipeline_id}").json()
    (job,) = [j for j in shown["jobs"] if j["name"] == "arm"]
    assert (job["status"], job["reason"]) == ("pending", arm.reason)
    # a worker serving those tags comes: it takes the waiting job, whose reason is cleared
    workers.start("arm-box", "arm", "gpu")
    detail = wait_for(services, pipeline_id, timeout=180)
    arm = _job(detail, "arm")
    assert (arm.status, arm.worker, arm.reason) == ("success", "arm-box", "")
    assert detail.status == "success"


def test_a_worker_killed_mid_job_is_lost_its_job_retried_canceled_elsewhere_and_cleaned(
    services: Services, workers: Workers, project: Project, repository: RepositoryRead
) -> None:
    first = workers.start("first", "kapal")
    _wait_registered(services, "first")
    pipeline_id = _start(
        services,
        project,
        repository,
        "sleeper:\n  image: busybox:latest\n  retry: {max: 1, when: runner_system_failure}\n"
        "  script: ['echo started $CI_JOB_ID', 'sleep 600']\n",
    )
    detail = wait_for(
        services, pipeline_id, _until("sleeper", lambda j: j.log_lines > 0), timeout=180
    )
    started = _job(detail, "sleeper", 1)
    assert (started.status, started.worker) == ("running", "first")
    work = workers.data_dir("first") / "work" / f"job-{started.id}"
    assert work.is_dir()
    workers.start("second", "kapal")
    _wait_registered(services, "second")
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed_at = time.monotonic()
    # the second worker's sweep finds the first silent, fails its job and runs it again
    detail = wait_for(
        services,
        pipeline_id,
        lambda d: _job(d, "sleeper", 1).status != "running",
        timeout=LOST_DEADLINE,
    )
    lost = _job(detail, "sleeper", 1)
    assert lost.status == "failed", lost
    assert lost.reason.startswith("worker lost: first sent no heartbeat for ")
    assert lost.reason.endswith("retrying (retry: of the job)")
    assert time.monotonic() - killed_at <= LOST_DEADLINE
    print(f"worker lost detected {time.monotonic() - killed_at:.1f}s after the SIGKILL")
    detail = wait_for(
        services,
        pipeline_id,
        _until("sleeper", lambda j: j.attempt == 2 and j.log_lines > 0),
        timeout=180,
    )
    again = _job(detail, "sleeper", 2)
    assert (again.status, again.worker) == ("running", "second")
    # cancel from this process reaches the worker process running it
    asked = time.monotonic()
    cancel_pipeline(services=services, pipeline_id=pipeline_id)
    detail = wait_for(services, pipeline_id, timeout=60)
    print(f"canceled in another process after {time.monotonic() - asked:.2f}s")
    assert detail.status == "canceled"
    assert _job(detail, "sleeper", 2).status == "canceled"
    # the first worker restarted in its place removes what it left: container, work dir
    paths = RuntimePaths.for_settings(RuntimeEnvironment(workers.data_dir("first")))

    def left() -> list[str]:
        found = [*paths.run_root.glob("ct-*"), *paths.disk_root.glob("ct-*")]
        return sorted(p.name for p in found) + ([work.name] if work.exists() else [])

    assert work.name in left() and len(left()) > 1
    workers.start("first", "kapal")
    deadline = time.monotonic() + 120
    while left() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert left() == [], workers.output("first")


SHARED_PIPELINE = """
stages: [build, test]
image-build:
  stage: build
  tags: [builder]
  build:
    context: .
    tags: ["shop-app:latest"]
make:
  stage: build
  tags: [builder]
  image: busybox:latest
  script: ["mkdir -p out .cache", "echo made on builder > out/made.txt", "echo kept > .cache/c"]
  artifacts: {paths: [out/]}
  cache: {key: shared, paths: [.cache/]}
use:
  stage: test
  tags: [tester]
  image: shop-app:latest
  cache: {key: shared, paths: [.cache/]}
  script: [cat /app/hello.txt, cat out/made.txt, cat .cache/c]
"""


def test_a_later_job_on_another_worker_gets_the_built_image_the_artifacts_and_the_cache(
    tmp_path: Path,
    services: Services,
    workers: Workers,
    project: Project,
    repository: RepositoryRead,
    registry: str,
) -> None:
    from web.db.logs import read_log
    from web.db.results import list_built_images

    # two machines as far as files go: an image store each, one shared dir, one registry
    workers.env.update(
        KAPAL_SHARED_DIR=str(tmp_path / "shared"),
        KAPAL_SHARE_REGISTRY=f"{registry}/kapal",
        KAPAL_INSECURE_REGISTRIES=f'["{registry}"]',
    )
    for name in ("builder", "tester"):
        workers.data_dir(name, own_images=True)
    workers.start("builder", "builder")
    workers.start("tester", "tester")
    _wait_registered(services, "builder", "tester")
    project.commit(
        {
            ".kapal.yml": SHARED_PIPELINE,
            "Dockerfile": "FROM busybox:latest\nCOPY hello.txt /app/hello.txt\n",
            "hello.txt": "hello from the built image\n",
        }
    )
    project.push()
    pipeline_id = create_pipeline_for_ref(
        services=services, repository_id=repository.id, ref="main"
    ).id
    detail = wait_for(services, pipeline_id, timeout=300)
    jobs = {j.name: j for j in detail.jobs}
    assert detail.status == "success", (detail.jobs, workers.output("tester"))
    assert {n: j.worker for n, j in jobs.items()} == {
        "image-build": "builder",
        "make": "builder",
        "use": "tester",
    }
    with services.database.transaction() as session:
        lines = read_log(session=session, job_id=jobs["use"].id).lines
        (built,) = list_built_images(session=session, pipeline_id=pipeline_id)
    assert {"hello from the built image", "made on builder", "kept"} <= set(lines), lines
    # the tester ran the very image the builder built: pulled by its digest
    assert built.pushed and jobs["use"].image_digest == built.digest
    tester_tags = ImageStore(workers.data_dir("tester") / "images").tags()
    assert built.digest in {d for r, d in tester_tags.items() if "shop-app" in str(r)}
    assert (tmp_path / "shared" / "artifacts" / str(pipeline_id)).is_dir()
    assert not (workers.data_dir("builder") / "artifacts").exists()


def test_two_workers_drain_fifty_pipelines_and_run_each_job_once(
    services: Services, workers: Workers, project: Project, repository: RepositoryRead
) -> None:
    from sqlalchemy import select

    from web.db.logs import read_log
    from web.db.models import Job

    workers.start("left", "kapal")
    workers.start("right", "kapal")
    _wait_registered(services, "left", "right")
    project.commit({".kapal.yml": "once:\n  image: busybox:latest\n  script: ['echo ran']\n"})
    project.push()
    pipelines = [
        create_pipeline_for_ref(services=services, repository_id=repository.id, ref="main").id
        for _ in range(50)
    ]
    ended = [wait_for(services, pipeline_id, timeout=600) for pipeline_id in pipelines]
    assert [p.status for p in ended] == ["success"] * 50
    with services.database.transaction() as session:
        jobs = list(session.scalars(select(Job)))
        logs = {job.id: read_log(session=session, job_id=job.id).lines for job in jobs}
    assert len(jobs) == 50 and {j.attempt for j in jobs} == {1}
    # a job run twice would have said so twice in its log
    assert all(lines.count("ran") == 1 for lines in logs.values()), logs
    assert {j.worker for j in jobs} == {"left", "right"}


class RestartableRedis:
    """A Redis server without persistence on a fixed port, restarted in place (its queues
    lost, as a Redis restarted without persistence loses them)."""

    def __init__(self, root: Path) -> None:

        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it and wait until it answers."""
        import shutil

        binary = shutil.which("redis-server")
        assert binary is not None
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", "--dir", str(self.root)]
        self.process = subprocess.Popen(
            args,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                if redis.Redis.from_url(self.url).ping():
                    return
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server does not answer"
                time.sleep(0.05)

    def stop(self) -> None:
        """Stop it (SIGKILL: nothing is saved)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def test_pipelines_finish_when_redis_restarts_under_them(
    tmp_path: Path,
    database_url_postgres: str,
    image_store: ImageStore,
    busybox_image: str,
    project: Project,
) -> None:
    broker = RestartableRedis(tmp_path / "redis")
    broker.start()
    settings = Settings(
        data_dir=tmp_path / "web",
        secret_key=SecretStr(KEY),
        database_url=database_url_postgres,
        broker_url=broker.url,
    )
    app = create_celery(settings)
    services = app.services
    workers = Workers(tmp_path / "workers", image_store, database_url_postgres, broker.url)
    try:
        repository = register(services, project)
        workers.start("only", "kapal")
        _wait_registered(services, "only")
        project.commit(
            {
                ".kapal.yml": "stages: [one, two]\n"
                "slow:\n  stage: one\n  image: busybox:latest\n  script: ['sleep 4']\n"
                "after:\n  stage: two\n  image: busybox:latest\n  script: ['echo after']\n"
            }
        )
        project.push()
        # three pipelines, two jobs at a time: one waits in Redis when it goes away
        pipelines = [
            create_pipeline_for_ref(services=services, repository_id=repository.id, ref="main").id
            for _ in range(3)
        ]
        wait_for(services, pipelines[0], _until("slow", lambda j: j.status == "running"))
        broker.stop()
        time.sleep(1)
        broker.start()
        ended = [wait_for(services, pipeline_id, timeout=300) for pipeline_id in pipelines]
        assert [p.status for p in ended] == ["success"] * 3, workers.output("only")
        # the third pipeline's first job lost its message with Redis: the idle worker sent it
        assert "with a worker free: sending them again" in workers.output("only")
    finally:
        workers.stop_all()
        broker.stop()
        services.database.dispose()
