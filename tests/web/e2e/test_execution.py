"""What a webhook's pipeline runs under, played on the real runtime by a real worker: only the
secrets its ref may have (masked in the log), no host network unless the operator allows it for
that repository, and images and caches of its own repository only."""

from __future__ import annotations

from tests.web.e2e.conftest import wait_for
from tests.web.service_support import register
from tests.web.test_mirrors import Project
from web.db.logs import read_log
from web.db.repos import update_repository
from web.db.schemas import RepositoryRead, RepositoryUpdate
from web.db.secrets import set_secret
from web.orchestration import Services, create_pipeline_for_ref
from web.tasks import EmbeddedWorker

DEPLOY_TOKEN = "deploy-token-0123456789"
PUBLIC_TOKEN = "public-token-9876543210"

SECRETS = """
show:
  image: busybox:latest
  script:
    - echo "deploy=${DEPLOY_TOKEN:-none}"
    - echo "public=${PUBLIC_TOKEN:-none}"
"""


def _run(services: Services, repository: RepositoryRead, ref: str) -> tuple[str, list[str]]:
    created = create_pipeline_for_ref(services=services, repository_id=repository.id, ref=ref)
    detail = wait_for(services, created.id)
    (job,) = detail.jobs
    with services.database.transaction() as session:
        lines = read_log(session=session, job_id=job.id).lines
    return f"{detail.status}: {job.reason}", lines


def test_protected_secrets_reach_only_the_default_branch_and_are_masked(
    services: Services, worker: EmbeddedWorker, project: Project, repository: RepositoryRead
) -> None:
    with services.database.transaction() as session:
        cipher = services.cipher()
        set_secret(
            session=session,
            cipher=cipher,
            repository_id=repository.id,
            name="DEPLOY_TOKEN",
            value=DEPLOY_TOKEN,
            protected=True,
        )
        set_secret(
            session=session,
            cipher=cipher,
            repository_id=repository.id,
            name="PUBLIC_TOKEN",
            value=PUBLIC_TOKEN,
        )
    project.commit({".kapal.yml": SECRETS})
    project.push()
    project.push("HEAD:refs/heads/feature")
    status, main_log = _run(services, repository, "main")
    assert status.startswith("success")
    assert "deploy=[MASKED]" in main_log and "public=[MASKED]" in main_log
    status, feature_log = _run(services, repository, "feature")
    assert status.startswith("success")
    assert "deploy=none" in feature_log and "public=[MASKED]" in feature_log
    assert not any(DEPLOY_TOKEN in line or PUBLIC_TOKEN in line for line in main_log + feature_log)


HOST_NETWORK = """
host:
  image: busybox:latest
  network: host
  script: [echo on the host network]
"""


def test_network_host_is_refused_unless_the_repository_is_allowed_it(
    services: Services, worker: EmbeddedWorker, project: Project, repository: RepositoryRead
) -> None:
    project.commit({".kapal.yml": HOST_NETWORK})
    project.push()
    status, lines = _run(services, repository, "main")
    assert status.startswith("failed: ")
    assert "network: host" in status and "does not allow" in status
    assert "on the host network" not in lines
    with services.database.transaction() as session:
        update_repository(
            session=session,
            cipher=services.cipher(),
            repository_id=repository.id,
            changes=RepositoryUpdate(allow_host_network=True),
        )
    status, lines = _run(services, repository, "main")
    assert status.startswith("success")
    assert "on the host network" in lines


CACHED = """
cached:
  image: busybox:latest
  cache: {key: deps, paths: [vendor/]}
  script:
    - cat vendor/who || echo nothing cached
    - mkdir -p vendor && echo "$CI_PROJECT_PATH" > vendor/who
"""


def test_two_repositories_with_one_cache_key_get_caches_of_their_own(
    services: Services,
    worker: EmbeddedWorker,
    project: Project,
    repository: RepositoryRead,
    tmp_path: object,
) -> None:
    from pathlib import Path

    other_project = Project(Path(str(tmp_path)) / "other")
    other = register(services, other_project, "mallory/copycat")
    for each in (project, other_project):
        each.commit({".kapal.yml": CACHED})
        each.push()
    status, first = _run(services, repository, "main")
    assert status.startswith("success") and "nothing cached" in first
    status, theirs = _run(services, other, "main")
    assert status.startswith("success") and "nothing cached" in theirs
    assert "acme/shop" not in theirs
    status, again = _run(services, repository, "main")
    assert status.startswith("success") and "acme/shop" in again


BUILD = """
stages: [build, test]
image-build:
  stage: build
  build:
    context: .
    tags: ["shop-app:latest"]
use:
  stage: test
  image: shop-app:latest
  script: [cat /app/hello.txt]
"""
DOCKERFILE = "FROM busybox:latest\nCOPY hello.txt /app/hello.txt\n"


def test_a_built_image_is_recorded_and_seen_by_its_own_repository_only(
    services: Services,
    worker: EmbeddedWorker,
    project: Project,
    repository: RepositoryRead,
    tmp_path: object,
) -> None:
    from pathlib import Path

    from web.db.pipelines import get_pipeline_detail
    from web.db.results import list_built_images

    project.commit(
        {".kapal.yml": BUILD, "Dockerfile": DOCKERFILE, "hello.txt": "hello from acme\n"}
    )
    project.push()
    created = create_pipeline_for_ref(services=services, repository_id=repository.id, ref="main")
    detail = wait_for(services, created.id)
    jobs = {job.name: job for job in detail.jobs}
    assert detail.status == "success", [(j.name, j.reason) for j in detail.jobs]
    with services.database.transaction() as session:
        (built,) = list_built_images(session=session, pipeline_id=created.id)
        lines = read_log(session=session, job_id=jobs["use"].id).lines
    assert built.tag == "shop-app:latest" and built.digest.startswith("sha256:")
    assert built.job_id == jobs["image-build"].id
    assert "hello from acme" in lines
    # another repository naming the same image does not get acme's build
    other_project = Project(Path(str(tmp_path)) / "other")
    other = register(services, other_project, "mallory/copycat")
    other_project.commit(
        {".kapal.yml": "use:\n  image: shop-app:latest\n  script: [cat /app/hello.txt]\n"}
    )
    other_project.push()
    theirs = create_pipeline_for_ref(services=services, repository_id=other.id, ref="main")
    finished = wait_for(services, theirs.id)
    with services.database.transaction() as session:
        shown = get_pipeline_detail(session=session, pipeline_id=theirs.id)
    assert finished.status == "failed"
    assert shown is not None and "shop-app" in shown.jobs[0].reason
