"""GitLab's predefined CI_* variables, computed from a `TriggerContext` (and per job)."""

from __future__ import annotations

import hashlib
import re

from pipeline.context import TriggerContext
from pipeline.plan import Variable

_SLUG_INVALID = re.compile(r"[^a-z0-9]+")


def slug(text: str) -> str:
    """GitLab's `*_SLUG` form: lowercased, runs of other characters as '-', at most 63 chars."""
    return _SLUG_INVALID.sub("-", text.lower())[:63].strip("-")


def environment_slug(name: str) -> str:
    """GitLab's CI_ENVIRONMENT_SLUG: at most 24 of [a-z0-9-], starting with a letter.

    When slugging changed the name (uppercase, '/', too long...), 17 characters are kept and a
    6-character hash of the name is added, so distinct names keep distinct slugs.
    """
    slugged = re.sub(r"[^a-z0-9]", "-", name.lower())
    if not re.match(r"[a-z]", slugged):
        slugged = "env-" + slugged
    slugged = re.sub(r"-+", "-", slugged)
    if len(slugged) <= 24 and slugged == name:
        return slugged.removesuffix("-")
    short = slugged[:17]
    if not short.endswith("-"):
        short += "-"
    return short + _base36(int(hashlib.sha256(name.encode()).hexdigest(), 16))[-6:]


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while number:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
    return out or "0"


def pipeline_variables(
    context: TriggerContext, *, config_path: str, workflow_name: str | None
) -> tuple[Variable, ...]:
    """The predefined variables every job of a pipeline sees."""
    message = context.commit_message
    title, _, description = message.partition("\n")
    values: list[tuple[str, str]] = [
        ("CI", "true"),
        ("GITLAB_CI", "true"),
        ("KAPAL", "true"),
        ("CI_SERVER_NAME", "kapal"),
        ("CI_PIPELINE_ID", str(context.pipeline_id)),
        ("CI_PIPELINE_IID", str(context.pipeline_id)),
        ("CI_PIPELINE_SOURCE", context.source),
        ("CI_CONFIG_PATH", config_path),
        ("CI_COMMIT_SHA", context.commit_sha),
        ("CI_COMMIT_SHORT_SHA", context.commit_short_sha),
        ("CI_COMMIT_BEFORE_SHA", context.commit_before_sha),
        ("CI_COMMIT_REF_NAME", context.ref),
        ("CI_COMMIT_REF_SLUG", slug(context.ref)),
        ("CI_COMMIT_MESSAGE", message),
        ("CI_COMMIT_TITLE", title),
        ("CI_COMMIT_DESCRIPTION", description.lstrip("\n")),
        ("CI_COMMIT_TIMESTAMP", context.commit_timestamp),
        ("CI_COMMIT_AUTHOR", context.commit_author),
        ("CI_DEFAULT_BRANCH", context.default_branch),
        ("CI_PROJECT_NAME", context.project_name),
        ("CI_PROJECT_PATH", context.project_path or context.project_name),
        ("CI_PROJECT_PATH_SLUG", slug(context.project_path or context.project_name)),
        ("CI_PROJECT_DIR", context.project_dir),
        ("CI_BUILDS_DIR", context.project_dir.rsplit("/", 1)[0] or "/"),
    ]
    if context.tag is not None:
        values.append(("CI_COMMIT_TAG", context.tag))
        values.append(("CI_COMMIT_TAG_MESSAGE", message))
    elif context.branch is not None and context.source != "merge_request_event":
        # GitLab leaves CI_COMMIT_BRANCH unset in merge request pipelines.
        values.append(("CI_COMMIT_BRANCH", context.branch))
    if workflow_name is not None:
        values.append(("CI_PIPELINE_NAME", workflow_name))
    values += server_variables(context.server_url)
    return tuple(Variable(name, value, "predefined") for name, value in values)


def server_variables(url: str) -> list[tuple[str, str]]:
    """GitLab's CI_SERVER_* variables of the instance at `url` (none when it is no http(s) URL).

    As GitLab sets them: CI_SERVER_URL the base URL with the protocol, a port only when it is
    not the protocol's own, and the path GitLab is served under (https://gitlab.example.com:8080);
    CI_SERVER_HOST the host alone; CI_SERVER_PORT the port (443 or 80 when none is written);
    CI_SERVER_PROTOCOL http or https; CI_SERVER_FQDN the host with a non-standard port
    (gitlab.example.com:8080), the form `component:` paths start with.
    """
    from urllib.parse import urlsplit  # only when an instance is configured

    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        return []
    host = parts.hostname
    if scheme not in ("http", "https") or not host:
        return []
    standard = 443 if scheme == "https" else 80
    shown_host = f"[{host}]" if ":" in host else host
    fqdn = shown_host if port in (None, standard) else f"{shown_host}:{port}"
    return [
        ("CI_SERVER_URL", f"{scheme}://{fqdn}{parts.path.rstrip('/')}"),
        ("CI_SERVER_HOST", host),
        ("CI_SERVER_PORT", str(port or standard)),
        ("CI_SERVER_PROTOCOL", scheme),
        ("CI_SERVER_FQDN", fqdn),
    ]


def job_variables(
    *,
    name: str,
    stage: str,
    job_id: int,
    node_index: int | None,
    node_total: int | None,
    manual: bool,
    environment: tuple[str, str | None, str] | None,
) -> tuple[Variable, ...]:
    """The predefined variables of one job (name, stage, parallel index, environment)."""
    values: list[tuple[str, str]] = [
        ("CI_JOB_NAME", name),
        ("CI_JOB_NAME_SLUG", slug(name)),
        ("CI_JOB_STAGE", stage),
        ("CI_JOB_ID", str(job_id)),
    ]
    if node_index is not None and node_total is not None:
        values += [("CI_NODE_INDEX", str(node_index)), ("CI_NODE_TOTAL", str(node_total))]
    else:
        values.append(("CI_NODE_TOTAL", "1"))
    if manual:
        values.append(("CI_JOB_MANUAL", "true"))
    if environment is not None:
        env_name, env_url, action = environment
        values += [
            ("CI_ENVIRONMENT_NAME", env_name),
            ("CI_ENVIRONMENT_SLUG", environment_slug(env_name)),
            ("CI_ENVIRONMENT_ACTION", action),
        ]
        if env_url is not None:
            values.append(("CI_ENVIRONMENT_URL", env_url))
    return tuple(Variable(key, value, "predefined") for key, value in values)
