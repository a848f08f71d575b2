"""Issue 8 item 7: images a pipeline builds belong to its repository; base images are read-only.

The attack: a `build:` job tagging `debian:bookworm` replaced the base image in the shared store
for every later job of every project. Played here with the real builder and runc, on a store of
the test's own (its `debian:bookworm` is a busybox image, so no mmdebstrap is needed).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.engine.recorder import JobStatus
from runner.errors import ImageNotFoundError
from runner.images import bootstrap_busybox
from runner.images.reference import Reference
from runner.images.store import ImageStore, TagRefusedError, namespaced
from runner.job_images import StoreImageProvider, embedded_builder
from tests.security.pipelines import PipelineRun, backend_fixture, run_pipeline  # noqa: F401
from tests.support.runtime_leftovers import RecordingBackend

POISON_PIPELINE = """
poison:
  build: {context: ., tags: ["debian:bookworm", "app:1"]}
"""
POISON_DOCKERFILE = "FROM debian:bookworm\nRUN echo poisoned > /poison\n"

PROBE_PIPELINE = """
probe:
  image: debian:bookworm
  script:
    - if test -e /poison; then echo "sees the poison"; else echo "clean base"; fi
"""


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    """An image store of this test's own whose base `debian:bookworm` is a busybox image."""
    store = ImageStore(tmp_path / "images")
    bootstrap_busybox(store, "debian:bookworm")
    return store


def run_poison(
    text: str, project: Path, provider: StoreImageProvider, backend: RecordingBackend
) -> PipelineRun:
    """Run `text` in `project`, whose Dockerfile builds on `debian:bookworm`."""
    project.mkdir(parents=True, exist_ok=True)
    (project / "Dockerfile").write_text(POISON_DOCKERFILE)
    return run_pipeline(text, project, provider=provider, backend=backend)


def test_a_build_tagging_a_base_image_changes_it_for_no_other_repository(
    store: ImageStore,
    backend: RecordingBackend,
    tmp_path: Path,
) -> None:
    base_digest = store.resolve("debian:bookworm").digest
    builder = embedded_builder(backend, tmp_path / "build-cache")
    attacker = StoreImageProvider(store, builder, owner="repo:1")
    victim = StoreImageProvider(store, builder, owner="repo:2")

    run = run_poison(POISON_PIPELINE, tmp_path / "attacker", attacker, backend)
    assert run.status("poison") == JobStatus.SUCCESS, (run.reason("poison"), run.log("poison"))
    built = attacker.store.resolve("debian:bookworm").digest
    assert built != base_digest  # the attacker's own repository sees its build...

    # ...while the base image, for the operator and for every other repository, is unchanged
    assert ImageStore(store.root).resolve("debian:bookworm").digest == base_digest
    assert victim.store.resolve("debian:bookworm").digest == base_digest
    assert not victim.available("app:1")
    run = run_poison(PROBE_PIPELINE, tmp_path / "victim", victim, backend)
    assert run.status("probe") == JobStatus.SUCCESS, run.reason("probe")
    assert "clean base" in run.log("probe")

    # the attacker's jobs get its own build first, as a repository expects of its images
    run = run_poison(PROBE_PIPELINE, tmp_path / "attacker", attacker, backend)
    assert "sees the poison" in run.log("probe")

    # the operator sees the build under the repository's namespace, and gc keeps it
    names = {t.reference.familiar for t in ImageStore(store.root).list_images()}
    assert names == {
        "debian:bookworm",
        namespaced("repo:1", Reference.parse("debian:bookworm")).familiar,
        namespaced("repo:1", Reference.parse("app:1")).familiar,
    }
    ImageStore(store.root).gc()
    assert attacker.store.resolve("app:1").digest == built


def test_a_build_cannot_write_into_another_repositorys_namespace(
    store: ImageStore, backend: RecordingBackend, tmp_path: Path
) -> None:
    builder = embedded_builder(backend, tmp_path / "build-cache")
    victim = StoreImageProvider(store, builder, owner="repo:2")
    victim.store.tag(store.resolve("debian:bookworm"), "app:1")
    victims_name = namespaced("repo:2", Reference.parse("app:1")).familiar
    attacker = StoreImageProvider(store, builder, owner="repo:1")

    pipeline_text = f'poison:\n  build: {{context: ., tags: ["{victims_name}"]}}\n'
    run = run_poison(pipeline_text, tmp_path / "attacker", attacker, backend)
    assert run.status("poison") == JobStatus.FAILED
    assert f"cannot tag the image {victims_name!r}" in run.reason("poison")
    assert "Tag the image with a name of your own" in run.reason("poison")
    assert victim.store.resolve("app:1").digest == store.resolve("debian:bookworm").digest
    # nor read what another repository built, by its namespaced name
    assert not attacker.available(victims_name)
    with pytest.raises(ImageNotFoundError):
        attacker.resolve(victims_name)


# -- the store's namespaces, without a runtime ---------------------------------------------


def test_owners_write_their_namespace_and_read_their_own_first(store: ImageStore) -> None:
    base = store.resolve("debian:bookworm")
    other = bootstrap_busybox(ImageStore(store.root, owner="repo:1"), "debian:bookworm")
    mine = store.for_owner("repo:1")
    assert mine.resolve("debian:bookworm").digest == other.digest
    assert store.for_owner("repo:2").resolve("debian:bookworm").digest == base.digest
    assert store.resolve("debian:bookworm").digest == base.digest
    assert mine.writable_name("debian:bookworm") == namespaced(
        "repo:1", Reference.parse("debian:bookworm")
    )
    # an owner lists its own builds and the base images, never another owner's
    mine.tag(base, "only-mine:1")
    assert "only-mine:1" not in str(store.for_owner("repo:2").tags())
    assert {str(r) for r in mine.tags()} >= {
        str(namespaced("repo:1", Reference.parse("only-mine:1"))),
        "docker.io/library/debian:bookworm",
    }
    # removing from a namespace touches neither the base nor another owner
    assert mine.untag("debian:bookworm") == [
        namespaced("repo:1", Reference.parse("debian:bookworm"))
    ]
    assert mine.resolve("debian:bookworm").digest == base.digest
    with pytest.raises(ImageNotFoundError):
        store.for_owner("repo:2").untag("only-mine:1")


def test_the_reserved_namespace_is_refused_to_pipelines(store: ImageStore) -> None:
    name = namespaced("repo:2", Reference.parse("app:1"))
    with pytest.raises(TagRefusedError, match="a pipeline cannot write there"):
        store.for_owner("repo:1").tag(store.resolve("debian:bookworm"), name)
    assert store.tags().get(name) is None


def test_the_operator_is_told_where_a_pipeline_build_went(store: ImageStore) -> None:
    store.for_owner("local:/src/app").tag(store.resolve("debian:bookworm"), "app:1")
    with pytest.raises(ImageNotFoundError, match=r"kapal\.invalid/local-src-app-[0-9a-f]{12}/"):
        store.resolve("app:1")
