"""Fuzzing `trigger:`: random trigger forms and random child files, linted, planned and their
children planned as the engine plans them; nothing but `PipelineError` may escape."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import Plan, TriggerContext, lint, load, plan
from pipeline.errors import PipelineError
from pipeline.trigger import plan_child

FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
CONTEXT = TriggerContext(source="push", branch="main", variables=(("CLI", "1"),))
FILES = ["child.yml", "other.yml", "missing.yml", "ci/../child.yml", "/child.yml", "$CLI.yml"]

_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2, 5),
    st.sampled_from(["depend", "mirror", "wait", "", "group/project", "child.yml", "x" * 40]),
    st.text(max_size=6),
)
_include_entry = st.one_of(
    st.sampled_from(FILES),
    st.fixed_dictionaries({"local": st.sampled_from(FILES)}),
    st.fixed_dictionaries(
        {"artifact": st.sampled_from(["gen.yml", ""])},
        optional={"job": st.sampled_from(["gen", "nope", "fan"])},
    ),
    st.fixed_dictionaries({"project": st.just("g/p")}, optional={"file": st.just("a.yml")}),
    st.fixed_dictionaries({"template": st.just("Jobs/Build.gitlab-ci.yml")}),
    st.fixed_dictionaries(
        {"local": st.just("child.yml")},
        optional={
            "inputs": st.one_of(
                _scalar,
                st.dictionaries(
                    st.one_of(st.sampled_from(["env", "n"]), st.integers(0, 2)),
                    st.one_of(_scalar, st.lists(_scalar, max_size=2)),
                    max_size=3,
                ),
            ),
            "rules": st.just([{"if": "$CLI"}]),
        },
    ),
    _scalar,
)
_trigger = st.one_of(
    _scalar,
    st.lists(_scalar, max_size=2),
    st.fixed_dictionaries(
        {},
        optional={
            "include": st.one_of(_include_entry, st.lists(_include_entry, max_size=4)),
            "project": _scalar,
            "branch": _scalar,
            "strategy": _scalar,
            "forward": st.one_of(
                _scalar,
                st.fixed_dictionaries(
                    {},
                    optional={
                        "yaml_variables": _scalar,
                        "pipeline_variables": _scalar,
                        "other": _scalar,
                    },
                ),
            ),
        },
    ),
)
_valid_trigger = st.fixed_dictionaries(
    {
        "include": st.one_of(
            st.sampled_from(["child.yml", "other.yml"]),
            st.lists(
                st.fixed_dictionaries({"local": st.sampled_from(["child.yml", "other.yml"])}),
                min_size=1,
                max_size=2,
            ),
            st.just([{"artifact": "gen.yml", "job": "gen"}]),
        )
    },
    optional={
        "strategy": st.sampled_from(["depend", "mirror"]),
        "forward": st.fixed_dictionaries(
            {}, optional={"yaml_variables": st.booleans(), "pipeline_variables": st.booleans()}
        ),
    },
)
_wild_job = st.fixed_dictionaries(
    {"trigger": _trigger},
    optional={
        "stage": st.sampled_from(["build", "test", "nope"]),
        "when": st.sampled_from(["manual", "delayed", "always", "never"]),
        "parallel": st.one_of(st.integers(1, 3), st.just({"matrix": [{"T": ["a", "b"]}]})),
        "script": st.just(["echo"]),
        "image": st.just("busybox"),
        "extends": st.just(".base"),
    },
)
_plausible_job = st.fixed_dictionaries(
    {"trigger": _valid_trigger, "stage": st.just("test")},
    optional={
        "variables": st.dictionaries(st.sampled_from(["A", "B"]), st.sampled_from(["$A", "1"])),
        "needs": st.lists(st.just("gen"), max_size=1),
        "parallel": st.just({"matrix": [{"T": ["a", "b"]}]}),
        "allow_failure": st.booleans(),
        "rules": st.just([{"if": "$CI_COMMIT_BRANCH == 'main'"}]),
    },
)
_trigger_job = st.one_of(_plausible_job, _plausible_job, _wild_job)
_child_job = st.fixed_dictionaries(
    {"script": st.one_of(st.just(["echo $A"]), _scalar)},
    optional={
        "image": st.just("busybox"),
        "rules": st.just([{"if": "$CI_PIPELINE_SOURCE == 'parent_pipeline'"}]),
        "trigger": _trigger,
        "when": _scalar,
    },
)
_child = st.one_of(
    st.just({"c1": {"image": "busybox", "script": ["echo $A"]}}),
    st.just("spec:\n  inputs:\n    env: {default: a}\n---\nc-$[[ inputs.env ]]: {script: [x]}\n"),
    st.dictionaries(st.sampled_from(["c1", "c2"]), _child_job, min_size=1, max_size=2),
    st.dictionaries(st.sampled_from(["c1", "c2", "stages"]), _child_job, max_size=3),
    _scalar,
)


def _dump(data: Any) -> str:
    if isinstance(data, str) and data.startswith("spec:"):
        return data  # a file with a `spec: inputs` header, written as it is
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


@FUZZ
@given(
    st.dictionaries(st.sampled_from(["t1", "t2", "t3"]), _trigger_job, min_size=1, max_size=3),
    _child,
    _child,
)
def test_random_triggers_and_children(jobs: dict[str, Any], child: Any, other: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "child.yml").write_text(_dump(child))
        (root / "other.yml").write_text(_dump(other))
        parent = {
            "stages": ["build", "test"],
            ".base": {"script": ["echo base"]},
            "gen": {"stage": "build", "image": "busybox", "script": ["echo"]},
            **jobs,
        }
        path = root / ".gitlab-ci.yml"
        path.write_text(_dump(parent))
        problems = lint(path)
        assert all(isinstance(p, PipelineError) for p in problems)
        assert all("None" not in str(p) for p in problems), problems
        try:
            result = plan(load(path), CONTEXT)
        except PipelineError:
            return
        assert Plan.from_json(result.to_json()) == result
        for job in result.runnable_jobs():
            if job.trigger is None:
                continue
            try:
                plan_child(
                    job,
                    parent_context=CONTEXT,
                    root_dir=str(root),
                    parent_file=str(path),
                    depth=1,
                    pipeline_id=2,
                    artifacts={("gen", "gen.yml"): _dump(child)},
                )
            except PipelineError:
                continue
