"""The validated pipeline: typed, checked configuration that `plan()` turns into a `Plan`.

`validate()` builds a `PipelineConfig` from a resolved document. Unlike `Plan` it still holds
what depends on the trigger (rules, only/except, parallel, needs by base name) and where each
item was written, so planning errors can point at the file.
"""

from __future__ import annotations

from pipeline.errors import Location, PipelineError
from pipeline.plan import Job
from pipeline.records import record

DEFAULT_STAGES = ("build", "test", "deploy")


def shown_list(items: tuple[str, ...]) -> str:
    """Patterns as a reason shows them: as written, quoted, without Python's escaping."""
    return "[" + ", ".join(f'"{i}"' if "'" in i else f"'{i}'" for i in items) + "]"


@record
class VariableDef:
    """A variable as written in the file (`value` already a string)."""

    name: str
    value: str
    expand: bool = True


@record
class RuleConfig:
    """One entry of `rules:` or `workflow: rules:`."""

    location: Location
    if_text: str | None = None
    changes: tuple[str, ...] | None = None
    exists: tuple[str, ...] | None = None
    when: str | None = None
    allow_failure: bool | None = None
    allow_failure_exit_codes: tuple[int, ...] = ()
    variables: tuple[VariableDef, ...] = ()
    start_in_seconds: int | None = None
    # workflow rules only: (on_new_commit, on_job_failure) when the rule sets `auto_cancel`
    auto_cancel: tuple[str | None, str | None] | None = None
    # job rules only: what replaces the job's `needs` / `interruptible` when the rule matches
    needs: tuple[NeedConfig, ...] | None = None
    interruptible: bool | None = None

    def describe(self, index: int) -> str:
        """How a skip reason names this rule: its number and its conditions."""
        parts = []
        if self.if_text is not None:
            parts.append(f"if: {self.if_text}")
        if self.changes is not None:
            parts.append(f"changes: {shown_list(self.changes)}")
        if self.exists is not None:
            parts.append(f"exists: {shown_list(self.exists)}")
        shown = ", ".join(parts) if parts else "no condition"
        return f"rule {index + 1} ({shown})"


@record
class RefFilter:
    """`only:` or `except:` with its refs, variables expressions and changes patterns."""

    location: Location
    refs: tuple[str, ...] | None = None
    variables: tuple[str, ...] | None = None
    changes: tuple[str, ...] | None = None


MatrixEntry = tuple[tuple[str, tuple[str, ...]], ...]
"""One item of `parallel: matrix:`: (variable, values) pairs in the order written."""


@record
class NeedConfig:
    """One `needs:` entry by base job name, optionally narrowed to matrix instances."""

    job: str
    location: Location
    artifacts: bool = True
    optional: bool = False
    matrix: tuple[MatrixEntry, ...] | None = None
    # The instance name as written (`build: [a]`) when the need named one matrix instance.
    instance: str | None = None


@record
class JobConfig:
    """One job as written (not yet expanded for `parallel`, not yet filtered by rules)."""

    name: str
    location: Location
    template: Job
    variables: tuple[VariableDef, ...] = ()
    inherit_variables: bool | tuple[str, ...] = True
    rules: tuple[RuleConfig, ...] | None = None
    only: RefFilter | None = None
    except_: RefFilter | None = None
    when: str = "on_success"
    allow_failure: bool | None = None
    allow_failure_exit_codes: tuple[int, ...] = ()
    parallel: int | None = None
    matrix: tuple[MatrixEntry, ...] | None = None
    needs: tuple[NeedConfig, ...] | None = None
    dependencies: tuple[tuple[str, Location], ...] | None = None
    start_in_seconds: int | None = None


@record
class PipelineConfig:
    """A whole validated pipeline file."""

    path: str
    stages: tuple[str, ...]
    variables: tuple[VariableDef, ...]
    jobs: tuple[JobConfig, ...]
    workflow_rules: tuple[RuleConfig, ...] | None = None
    workflow_name: str | None = None
    root_dir: str = ""
    # `workflow: auto_cancel` as (on_new_commit, on_job_failure), None where not set
    auto_cancel: tuple[str | None, str | None] = (None, None)
    # Warnings found while loading and checking it (duplicate keys, ignored keywords...).
    warnings: tuple[PipelineError, ...] = ()

    def job(self, name: str) -> JobConfig:
        """The job called `name` (before parallel expansion); KeyError when there is none."""
        for job in self.jobs:
            if job.name == name:
                return job
        raise KeyError(name)
