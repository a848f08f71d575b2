"""The keywords kapal knows: supported ones, and GitLab ones it recognises but does not run yet.

Every keyword GitLab documents is in one of the two tables, so a typo gets a "did you mean"
and a real GitLab keyword gets an honest "not supported by kapal yet" with what to do instead.
"""

from __future__ import annotations

GLOBAL_KEYWORDS = frozenset(
    {
        "stages",
        "variables",
        "default",
        "include",
        "workflow",
        # Deprecated in GitLab but still read there as defaults for every job.
        "image",
        "services",
        "before_script",
        "after_script",
        "cache",
        # GitLab has these; kapal reports them as unsupported.
        "spec",
        "types",
    }
)

UNSUPPORTED_GLOBAL_KEYWORDS = {
    "spec": "`spec:` belongs in a header: write `spec: inputs:` first, then a line '---', "
    "then the configuration",
    "types": "`types` is GitLab's removed old name of `stages`; rename it to `stages`",
}

LEGACY_GLOBAL_DEFAULTS = ("image", "services", "before_script", "after_script", "cache")

DEFAULT_KEYWORDS = frozenset(
    {
        "after_script",
        "artifacts",
        "before_script",
        "cache",
        "hooks",
        "id_tokens",
        "image",
        "interruptible",
        "retry",
        "services",
        "tags",
        "timeout",
    }
)

JOB_KEYWORDS = frozenset(
    {
        "script",
        "before_script",
        "after_script",
        "image",
        "services",
        "stage",
        "variables",
        "rules",
        "only",
        "except",
        "when",
        "allow_failure",
        "retry",
        "timeout",
        "artifacts",
        "cache",
        "parallel",
        "needs",
        "dependencies",
        "environment",
        "extends",
        "inherit",
        "interruptible",
        "resource_group",
        "tags",
        "coverage",
        "start_in",
        # Keywords only a GitLab server (or GitLab Runner) honours: planned without them, with
        # a warning (SERVER_KEYWORDS says what is lost).
        "id_tokens",
        "secrets",
        "pages",
        "release",
        "dast_configuration",
        "identity",
        "hooks",
        "manual_confirmation",  # recorded on the job for whoever starts it
        "trigger",  # a downstream pipeline (pipeline/trigger.py)
        # kapal's extensions
        "build",
        "deploy",
        "network",
    }
)

# What a plan loses by leaving each keyword out, for the warning and `Job.ignored_keywords`.
SERVER_KEYWORDS = {
    "id_tokens": "OIDC tokens are issued by a GitLab server; the job gets no ID token variables",
    "secrets": "secrets from Vault, Azure Key Vault, GCP or AWS are fetched by a GitLab server; "
    "define them as kapal secrets to get them as variables",
    "pages": "GitLab Pages publishes sites from a GitLab server; "
    "the job runs, nothing is published",
    "release": "releases are created by a GitLab server; the job runs, no release is created",
    "dast_configuration": "DAST site and scanner profiles live on a GitLab server; "
    "the job runs without them",
    "identity": "cloud identity federation is provided by GitLab.com; the job gets no "
    "cloud credentials from it",
    "hooks": "`pre_get_sources_script` runs before GitLab Runner clones the repository; kapal "
    "prepares the sources itself and does not run it (move the commands to `before_script:`)",
}

UNSUPPORTED_JOB_KEYWORDS = {
    "run": "`run:` (CI/CD steps) is not supported by kapal yet; use `script:`",
    "inputs": "`inputs:` (job inputs) is not supported by kapal yet; use variables",
}

# What a trigger job may hold besides `trigger:` (GitLab's Bridge + Processable entries).
TRIGGER_JOB_KEYWORDS = frozenset(
    {
        "trigger",
        "stage",
        "extends",
        "rules",
        "only",
        "except",
        "variables",
        "inherit",
        "allow_failure",
        "when",
        "needs",
        "resource_group",
        "environment",
        "interruptible",
        "parallel",
    }
)
TRIGGER_WHEN = ("on_success", "on_failure", "always", "manual")
TRIGGER_STRATEGIES = ("depend", "mirror")
MAX_TRIGGER_INCLUDES = 3
"""GitLab reads at most this many files for one child pipeline."""
MAX_CHILD_DEPTH = 2
"""GitLab nests child pipelines at most this many levels below the parent pipeline."""

WORKFLOW_KEYWORDS = frozenset({"rules", "name", "auto_cancel"})
UNSUPPORTED_WORKFLOW_KEYWORDS: dict[str, str] = {}
AUTO_CANCEL_ON_NEW_COMMIT = ("conservative", "interruptible", "none")
AUTO_CANCEL_ON_JOB_FAILURE = ("none", "all")

RULE_KEYWORDS = frozenset(
    {
        "if",
        "changes",
        "exists",
        "when",
        "variables",
        "allow_failure",
        "start_in",
        "needs",
        "interruptible",
    }
)
WORKFLOW_RULE_KEYWORDS = frozenset({"if", "changes", "exists", "when", "variables", "auto_cancel"})
UNSUPPORTED_RULE_KEYWORDS: dict[str, str] = {}

PULL_POLICIES = ("always", "if-not-present", "never")
ARTIFACT_ACCESS = ("all", "developer", "maintainer", "none")

JOB_WHEN = ("on_success", "on_failure", "always", "manual", "delayed")
RULE_WHEN = ("on_success", "on_failure", "always", "manual", "delayed", "never")
MAX_START_IN = 7 * 86400
"""GitLab's limit for `start_in` of a delayed job: one week."""
ENVIRONMENT_TIERS = ("production", "staging", "testing", "development", "other")
RETRY_WHEN = (
    "always",
    "unknown_failure",
    "script_failure",
    "api_failure",
    "stuck_or_timeout_failure",
    "runner_system_failure",
    "runner_unsupported",
    "stale_schedule",
    "job_execution_timeout",
    "archived_failure",
    "unmet_prerequisites",
    "scheduler_failure",
    "data_integrity_failure",
)

ONLY_REF_KEYWORDS = {
    "api": "api",
    "chat": "chat",
    "external": "external",
    "external_pull_requests": "external_pull_request_event",
    "merge_requests": "merge_request_event",
    "pipelines": "pipeline",
    "pushes": "push",
    "schedules": "schedule",
    "triggers": "trigger",
    "web": "web",
}

# `artifacts: reports:` types GitLab documents; kapal keeps their files as artifacts (collected
# whatever the job's result, as GitLab does) and reads junit and coverage_report itself.
REPORT_KINDS = frozenset(
    {
        "accessibility",
        "annotations",
        "api_fuzzing",
        "browser_performance",
        "codequality",
        "container_scanning",
        "coverage_fuzzing",
        "coverage_report",
        "cyclonedx",
        "dast",
        "dependency_scanning",
        "dotenv",
        "junit",
        "load_performance",
        "metrics",
        "requirements",
        "repository_xray",
        "sast",
        "secret_detection",
        "terraform",
    }
)
REMOVED_REPORT_KINDS = {
    "cobertura": "`artifacts: reports: cobertura` was removed in GitLab 15.0; write "
    "`coverage_report: {coverage_format: cobertura, path: coverage.xml}`",
    "performance": "`artifacts: reports: performance` was removed in GitLab 15.0; "
    "use `browser_performance`",
    "license_scanning": "`artifacts: reports: license_scanning` was removed in GitLab 16.0; "
    "use `cyclonedx`",
    "license_management": "`artifacts: reports: license_management` was removed in GitLab 13.0; "
    "use `cyclonedx`",
}
COVERAGE_FORMATS = ("cobertura", "jacoco")
