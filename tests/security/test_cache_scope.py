"""Issue 8 item 12: caches belong to a repository, and protected refs' caches to protected refs.

The attack: caches were shared by every project and branch under keys the pipeline chooses, so a
pipeline of one repository (or an unprotected branch) wrote files that another repository's (or
the default branch's) jobs restored and ran. Played with the real runtime: jobs on runc share one
cache root, each pipeline with the scope and protection its caller gives it.
"""

from __future__ import annotations

import functools
from pathlib import Path

from runner.cache import CacheStore
from runner.engine.recorder import JobStatus
from runner.images.store import ImageStore
from runner.job_images import StoreImageProvider
from tests.e2e.conftest import kapal
from tests.security.pipelines import backend_fixture, run_pipeline  # noqa: F401
from tests.support.runtime_leftovers import RecordingBackend

PIPELINE = """
deps:
  image: busybox:latest
  cache: {key: shared-key, paths: [.deps/]}
  script:
    - 'echo "restored: $(cat .deps/who 2>/dev/null || echo nothing)"'
    - mkdir -p .deps && echo "$WHO" > .deps/who
"""


def restored(
    who: str,
    caches: CacheStore,
    *,
    backend: RecordingBackend,
    image_store: ImageStore,
    tmp_path: Path,
    branch: str = "main",
) -> str:
    """Run the pipeline as `who` with `caches`; return what its job found in the cache."""
    run = run_pipeline(
        PIPELINE,
        tmp_path / who,
        provider=StoreImageProvider(image_store, owner=caches.scope),
        backend=backend,
        caches=caches,
        branch=branch,
        variables=(("WHO", who),),
    )
    assert run.status("deps") == JobStatus.SUCCESS, run.log("deps")
    line = next(x for x in run.log("deps") if x.startswith("restored: "))
    return line.removeprefix("restored: ")


def test_two_repositories_with_the_same_key_see_different_caches(
    backend: RecordingBackend, image_store: ImageStore, busybox_image: str, tmp_path: Path
) -> None:
    root = tmp_path / "cache"
    run = functools.partial(restored, backend=backend, image_store=image_store, tmp_path=tmp_path)
    assert run("attacker", CacheStore(root, "repo:1", protected=True)) == "nothing"
    assert run("attacker", CacheStore(root, "repo:1", protected=True)) == "attacker"
    # the victim repository chose the same key: it starts empty and never gets the attacker's
    assert run("victim", CacheStore(root, "repo:2", protected=True)) == "nothing"
    assert run("victim", CacheStore(root, "repo:2", protected=True)) == "victim"
    assert run("attacker", CacheStore(root, "repo:1", protected=True)) == "attacker"


def test_an_unprotected_branch_cannot_fill_the_default_branchs_cache(
    backend: RecordingBackend, image_store: ImageStore, busybox_image: str, tmp_path: Path
) -> None:
    root = tmp_path / "cache"
    run = functools.partial(restored, backend=backend, image_store=image_store, tmp_path=tmp_path)
    feature = CacheStore(root, "repo:1", protected=False)
    assert run("feature", feature, branch="feature") == "nothing"
    assert run("feature", feature, branch="feature") == "feature"
    main = CacheStore(root, "repo:1", protected=True)
    assert run("main", main) == "nothing"
    assert run("main", main) == "main"


# -- naming, without a runtime ---------------------------------------------------------------


def test_scopes_and_protection_name_different_folders(tmp_path: Path) -> None:
    stores = [
        CacheStore(tmp_path, "repo:1"),
        CacheStore(tmp_path, "repo:1", protected=True),
        CacheStore(tmp_path, "repo:2"),
        CacheStore(tmp_path, "local:/src/app"),
    ]
    folders = {store.root / store.dir_name("deps") for store in stores}
    assert len(folders) == len(stores)
    assert all(folder.parent.parent == tmp_path for folder in folders)
    # a key cannot reach another scope's folder, nor the other kind of ref's
    for key in ("../repo-2", "deps-protected", "/abs", ".."):
        for store in stores:
            folder = store.root / store.dir_name(key)
            assert folder.parent == store.root and folder not in folders


def test_saved_files_stay_within_their_scope(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    (workspace / ".deps").mkdir(parents=True)
    (workspace / ".deps" / "lib").write_text("evil")
    CacheStore(tmp_path / "cache", "repo:1").save("deps", workspace, [".deps/"])
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    assert CacheStore(tmp_path / "cache", "repo:2").restore("deps", fresh) == []
    assert CacheStore(tmp_path / "cache", "repo:1", protected=True).restore("deps", fresh) == []
    assert CacheStore(tmp_path / "cache", "repo:1").restore("deps", fresh) == [".deps/lib"]


def test_kapal_run_gives_each_project_its_own_caches(
    kapal_env: dict[str, str], busybox_image: str, tmp_path: Path
) -> None:
    outputs = {}
    for who in ("first", "second", "first"):
        project = tmp_path / who
        project.mkdir(exist_ok=True)
        (project / ".kapal.yml").write_text(PIPELINE.replace("shared-key", f"key-{tmp_path.name}"))
        done = kapal("run", str(project), "--var", f"WHO={who}", env=kapal_env)
        assert done.returncode == 0, done.stdout + done.stderr
        outputs.setdefault(who, []).append(done.stdout)
    assert "[deps] restored: nothing" in outputs["first"][0]
    assert "[deps] restored: nothing" in outputs["second"][0]  # the same key, another project
    assert "[deps] restored: first" in outputs["first"][1]
