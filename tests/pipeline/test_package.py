"""The `pipeline` package's lazy names: a function named like a submodule stays the function."""

from __future__ import annotations

import subprocess
import sys

# Each line imports the submodules first, the way the rest of kapal does, then uses the package's
# functions of the same names; a fresh interpreter, so no earlier import has bound anything.
SCRIPT = """
import pipeline
from pipeline.plan import Job
import pipeline.lint, pipeline.resolve, pipeline.validate, pipeline.planner
doc = pipeline.loads("job:\\n  script: [echo hi]\\n")
the_plan = pipeline.plan(doc, pipeline.TriggerContext(source="push", branch="main"))
assert [job.name for job in the_plan.jobs] == ["job"], the_plan
assert isinstance(the_plan.jobs[0], Job) and pipeline.Job is Job
assert pipeline.lint(doc) == [], pipeline.lint(doc)
assert pipeline.validate(pipeline.resolve(doc)).jobs
print("ok")
"""


def test_functions_named_like_submodules_stay_functions_after_those_imports() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.stdout == "ok\n", done.stderr[-2000:]


def test_importing_the_package_loads_no_submodule() -> None:
    code = "import sys, pipeline; print(sorted(m for m in sys.modules if m.startswith('pipeline')))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout == "['pipeline']\n"


def test_an_unknown_name_is_an_attribute_error() -> None:
    import pipeline

    try:
        pipeline.nosuch  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "nosuch" in str(exc)
    else:
        raise AssertionError("pipeline.nosuch did not raise AttributeError")
