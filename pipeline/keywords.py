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
    "spec": "`spec: inputs` (configuration inputs) is not supported by kapal yet; "
    "use variables instead",
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
        # kapal's extensions
        "build",
        "deploy",
        "network",
    }
)

UNSUPPORTED_JOB_KEYWORDS = {
    "trigger": "`trigger:` (downstream pipelines) is not supported by kapal yet; "
    "run the other project's pipeline separately",
    "secrets": "`secrets:` (external secret providers) is not supported by kapal yet; "
    "define the secret as a kapal secret and read it as a variable",
    "id_tokens": "`id_tokens:` (OIDC tokens) is not supported by kapal yet",
    "release": "`release:` (GitLab releases) is not supported by kapal yet; "
    "call your release tool from `script:`",
    "pages": "`pages:` (GitLab Pages) is not supported by kapal yet; "
    "keep `public/` as an artifact instead",
    "hooks": "`hooks:` (pre_get_sources_script) is not supported by kapal yet; "
    "put the commands in `before_script:`",
    "dast_configuration": "`dast_configuration:` is not supported by kapal yet",
    "identity": "`identity:` (cloud identity federation) is not supported by kapal yet",
    "manual_confirmation": "`manual_confirmation:` is not supported by kapal yet",
    "run": "`run:` (CI/CD steps) is not supported by kapal yet; use `script:`",
    "inputs": "`inputs:` (job inputs) is not supported by kapal yet; use variables",
}

WORKFLOW_KEYWORDS = frozenset({"rules", "name"})
UNSUPPORTED_WORKFLOW_KEYWORDS = {
    "auto_cancel": "`workflow: auto_cancel` is not supported by kapal yet; "
    "mark jobs `interruptible` instead",
}

RULE_KEYWORDS = frozenset({"if", "changes", "exists", "when", "variables", "allow_failure"})
UNSUPPORTED_RULE_KEYWORDS = {
    "needs": "`rules: needs` is not supported by kapal yet; use job-level `needs:`",
    "start_in": "`rules: start_in` needs `when: delayed`, which kapal does not support",
    "interruptible": "`rules: interruptible` is not supported by kapal yet; "
    "use job-level `interruptible:`",
    "auto_cancel": "`workflow: rules: auto_cancel` is not supported by kapal yet",
}

JOB_WHEN = ("on_success", "on_failure", "always", "manual")
RULE_WHEN = ("on_success", "on_failure", "always", "manual", "never")
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
