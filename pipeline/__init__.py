"""The pipeline language: `.kapal.yml` / `.gitlab-ci.yml` in, a frozen `Plan` out.

Pure: no I/O beyond reading the pipeline files. Imports neither `runner` nor `web`.

Flow::

    document = load(".kapal.yml")          # YAML with positions (anchors, merge keys, !reference)
    document = resolve(document)           # include: local, extends, default
    config = validate(document)            # every problem with file:line:col and keyword
    the_plan = plan(document, TriggerContext(source="push", branch="main"))

`plan()` resolves and validates by itself when given a loaded document. Nothing but
`PipelineError` (and its subclasses) escapes these functions, whatever the input.
"""

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
