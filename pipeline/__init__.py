"""The pipeline language: `.kapal.yml` / `.gitlab-ci.yml` in, a frozen `Plan` out.

Pure: no I/O beyond reading the pipeline files. Imports neither `runner` nor `web`.

Flow::

    document = load(".kapal.yml")          # YAML with positions (anchors, merge keys, !reference)
    document = resolve(document)           # include: local, extends, default
    config = validate(document)            # every problem with file:line:col and keyword
    the_plan = plan(document, TriggerContext(source="push", branch="main"))

`plan()` resolves and validates by itself when given a loaded document. Nothing but
`PipelineError` (and its subclasses) escapes these functions, whatever the input.

Importing the package is cheap: the names below load from their modules on first use (PEP 562),
so `kapal lint` does not pay for the planner. `plan`, `lint`, `validate` and `resolve` are both
functions (`pipeline.plan(document, context)`) and submodules (`from pipeline.plan import Job`);
the import system binds a submodule on its package when it first loads it, which here would hide
the function, so the package refuses that binding for those four names (`_Package`).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.config import PipelineConfig
    from pipeline.context import PIPELINE_SOURCES, TriggerContext
    from pipeline.document import Document, find_pipeline_file, load, loads
    from pipeline.errors import (
        ExpressionError,
        ExtendsError,
        IncludeError,
        LoadError,
        Location,
        PipelineError,
        PipelineWarning,
        PlanError,
        UnsupportedKeywordError,
        ValidationError,
    )
    from pipeline.lint import lint
    from pipeline.plan import (
        ArtifactsSpec,
        BuildSpec,
        CacheSpec,
        DeployServiceSpec,
        DeploySpec,
        EnvironmentSpec,
        ImageSpec,
        Job,
        Need,
        Notice,
        Plan,
        RetrySpec,
        ServiceSpec,
        Variable,
    )
    from pipeline.planner import plan
    from pipeline.resolve import resolve
    from pipeline.validate import validate

# name -> the module that defines it, imported on first use
_LAZY: dict[str, str] = {
    "ArtifactsSpec": "pipeline.plan",
    "BuildSpec": "pipeline.plan",
    "CacheSpec": "pipeline.plan",
    "DeployServiceSpec": "pipeline.plan",
    "DeploySpec": "pipeline.plan",
    "EnvironmentSpec": "pipeline.plan",
    "ImageSpec": "pipeline.plan",
    "Job": "pipeline.plan",
    "Need": "pipeline.plan",
    "Notice": "pipeline.plan",
    "Plan": "pipeline.plan",
    "RetrySpec": "pipeline.plan",
    "ServiceSpec": "pipeline.plan",
    "Variable": "pipeline.plan",
    "plan": "pipeline.planner",
    "PipelineConfig": "pipeline.config",
    "PIPELINE_SOURCES": "pipeline.context",
    "TriggerContext": "pipeline.context",
    "Document": "pipeline.document",
    "find_pipeline_file": "pipeline.document",
    "load": "pipeline.document",
    "loads": "pipeline.document",
    "ExpressionError": "pipeline.errors",
    "ExtendsError": "pipeline.errors",
    "IncludeError": "pipeline.errors",
    "LoadError": "pipeline.errors",
    "Location": "pipeline.errors",
    "PipelineError": "pipeline.errors",
    "PipelineWarning": "pipeline.errors",
    "PlanError": "pipeline.errors",
    "UnsupportedKeywordError": "pipeline.errors",
    "ValidationError": "pipeline.errors",
    "lint": "pipeline.lint",
    "resolve": "pipeline.resolve",
    "validate": "pipeline.validate",
}


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use (then it is an ordinary attribute)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


# functions that share their name with a submodule of this package
_NAMED_LIKE_SUBMODULES = frozenset({"plan", "lint", "validate", "resolve"})


class _Package(types.ModuleType):
    """The `pipeline` package: a submodule named like a function never replaces the function."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _NAMED_LIKE_SUBMODULES and isinstance(value, types.ModuleType):
            return  # the import system binding a submodule: the function stays
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

__all__ = [
    "PIPELINE_SOURCES",
    "ArtifactsSpec",
    "BuildSpec",
    "CacheSpec",
    "DeployServiceSpec",
    "DeploySpec",
    "Document",
    "EnvironmentSpec",
    "ExpressionError",
    "ExtendsError",
    "ImageSpec",
    "IncludeError",
    "Job",
    "LoadError",
    "Location",
    "Need",
    "Notice",
    "PipelineConfig",
    "PipelineError",
    "PipelineWarning",
    "Plan",
    "PlanError",
    "RetrySpec",
    "ServiceSpec",
    "TriggerContext",
    "UnsupportedKeywordError",
    "ValidationError",
    "Variable",
    "find_pipeline_file",
    "lint",
    "load",
    "loads",
    "plan",
    "resolve",
    "validate",
]
