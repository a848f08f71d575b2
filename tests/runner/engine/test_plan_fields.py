"""Plan fields the engine acts on at run time (issue 10): cache policy variables and fallback
keys, delayed jobs, auto-cancel on job failure, ignored keywords; over the fake backend."""

from __future__ import annotations

from typing import Any

from pipeline.plan import CacheSpec
from runner.engine.recorder import JobStatus
from runner.runtime.fake import FakeBehaviour
from tests.runner.engine.conftest import Harness, job, plan, workspace_of


def named(name: str) -> Any:
    """Match the main container of job `name`."""
    return lambda spec: spec.name == name


def counting(seen: list[str], name: str = "count") -> Any:
    """A behaviour that records `.deps/<name>` (or "none") and writes it back incremented."""

    def behave(spec: Any) -> FakeBehaviour:
        path = workspace_of(spec) / ".deps" / name
        before = path.read_text() if path.exists() else "none"
        seen.append(before)
        path.parent.mkdir(exist_ok=True)
        path.write_text(str(int(before) + 1) if before.isdigit() else "1")
        return FakeBehaviour()

    return behave


def read_cache(harness: Harness, key: str) -> str:
    """The count saved in cache `key`."""
    return (harness.caches.root / harness.caches.dir_name(key) / ".deps" / "count").read_text()


# -- cache: policy with variables -----------------------------------------------------------


def test_cache_policy_variable_is_expanded_per_job(harness: Harness) -> None:
    seen: list[str] = []
    harness.backend.script(named("unit"), counting(seen))
    cache = CacheSpec(key="deps", paths=(".deps/",), policy_text="$CACHE_POLICY")
    for policy in ("pull-push", "push", "pull", "pull"):
        harness.run(plan(job("unit", caches=(cache,)), variables={"CACHE_POLICY": policy}))
    # pull-push: none -> saves 1; push: restores nothing, saves 1; pull: restores 1, saves nothing
    assert seen == ["none", "none", "1", "1"]
    assert harness.recorder.final_status("unit") == JobStatus.SUCCESS


def test_cache_policy_variable_with_an_unknown_value_fails_the_job(harness: Harness) -> None:
    cache = CacheSpec(key="deps", paths=(".deps/",), policy_text="${CACHE_POLICY}")
    result = harness.run(plan(job("unit", caches=(cache,)), variables={"CACHE_POLICY": "puhs"}))
    unit = result.jobs["unit"]
    assert unit.status == JobStatus.FAILED
    assert "'${CACHE_POLICY}'" in unit.reason and "'puhs'" in unit.reason
    assert "pull, push or pull-push" in unit.reason
    assert harness.backend.started == []  # nothing ran


def test_cache_policy_variable_left_unset_fails_the_job(harness: Harness) -> None:
    cache = CacheSpec(key="deps", paths=(".deps/",), policy_text="$CACHE_POLICY")
    result = harness.run(plan(job("unit", caches=(cache,))))
    assert result.jobs["unit"].status == JobStatus.FAILED
    assert "expands to ''" in result.jobs["unit"].reason


# -- cache: fallback_keys -------------------------------------------------------------------


def test_fallback_key_is_restored_when_the_key_has_no_cache(harness: Harness) -> None:
    seen: list[str] = []
    harness.backend.script(named("unit"), counting(seen))
    main = CacheSpec(key="deps-main", paths=(".deps/",))
    harness.run(plan(job("unit", caches=(main,))))  # saves deps-main = 1
    branch = CacheSpec(
        key="deps-$BRANCH",
        paths=(".deps/",),
        fallback_keys=("deps-missing", "deps-$DEFAULT", "deps-other"),
    )
    variables = {"BRANCH": "feature", "DEFAULT": "main"}
    harness.run(plan(job("unit", caches=(branch,)), variables=variables))
    assert seen == ["none", "1"]
    log = harness.recorder.log("unit")
    assert any("restored the fallback cache 'deps-main'" in line for line in log)
    # saved to the key only: the fallback cache is untouched, the branch's has 2
    assert read_cache(harness, "deps-main") == "1"
    assert read_cache(harness, "deps-feature") == "2"
    harness.run(plan(job("unit", caches=(branch,)), variables=variables))
    assert seen[-1] == "2"  # the key's own cache now wins over the fallback


def test_cache_fallback_key_variable_is_the_last_resort(harness: Harness) -> None:
    seen: list[str] = []
    harness.backend.script(named("unit"), counting(seen))
    harness.run(plan(job("unit", caches=(CacheSpec(key="global", paths=(".deps/",)),))))
    own = CacheSpec(key="mine", paths=(".deps/",), fallback_keys=("nothing-here",))
    harness.run(plan(job("unit", caches=(own,)), variables={"CACHE_FALLBACK_KEY": "global"}))
    assert seen == ["none", "1"]
    harness.run(plan(job("unit", caches=(own,)), variables={"CACHE_FALLBACK_KEY": "x-protected"}))
    assert seen[-1] == "2"  # the key's own cache (saved by the run before)


def test_fallback_keys_are_not_used_without_pull(harness: Harness) -> None:
    seen: list[str] = []
    harness.backend.script(named("unit"), counting(seen))
    harness.run(plan(job("unit", caches=(CacheSpec(key="main", paths=(".deps/",)),))))
    push = CacheSpec(key="b", paths=(".deps/",), policy="push", fallback_keys=("main",))
    harness.run(plan(job("unit", caches=(push,))))
    assert seen == ["none", "none"]
