"""Sub-commands of `kapal` for this package (registered by `web.cli`): `lint` and `plan`.

`lint` itself lives in `pipeline.lint_command` (argparse, no Typer, for start-up); `plan` here.

Exit codes: 0 valid, 1 the pipeline has problems, 2 usage errors (bad options, no such file).
Warnings (a duplicate key, an ignored keyword) are printed but keep exit code 0 unless
`--strict`. With `--json`, problems are printed as JSON objects (file, line, column, job,
keyword, message, severity).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pipeline.context import PIPELINE_SOURCES, TriggerContext
from pipeline.errors import PipelineError
from pipeline.lint_command import (
    ARGV_COMMANDS,
    INPUT_HELP,
    LINT_HELP,
    _blocking,
    _load,
    _pipeline_path,
    _print_problems,
    _problems_json,
    _usage,
    lint_main,
)
from pipeline.plan import Plan
from pipeline.planner import plan as plan_pipeline
from pipeline.remote import command_fetcher, command_server_url
from pipeline.validate import validate_collecting

__all__ = ["ARGV_COMMANDS", "register"]

_INPUT_OPTION = typer.Option("--input", help=INPUT_HELP)

_VAR = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)", re.DOTALL)


def _git_head(root: Path) -> tuple[str | None, str | None]:
    """(branch, sha) of a git working tree at `root`, read from .git without running git."""
    git = root / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
    except OSError:
        return None, None
    if not head.startswith("ref: refs/heads/"):
        return None, head if re.fullmatch(r"[0-9a-f]{40}", head) else None
    branch = head.removeprefix("ref: refs/heads/")
    try:
        return branch, (git / "refs" / "heads" / branch).read_text().strip()
    except OSError:
        pass
    try:
        for line in (git / "packed-refs").read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1] == f"refs/heads/{branch}":
                return branch, parts[0]
    except OSError:
        pass
    return branch, None


def plan_command(
    path: Annotated[
        Path | None,
        typer.Argument(help="Pipeline file or project directory (default: the current one)."),
    ] = None,
    branch: Annotated[str | None, typer.Option(help="Plan for a push to this branch.")] = None,
    tag: Annotated[str | None, typer.Option(help="Plan for this tag.")] = None,
    source: Annotated[
        str,
        typer.Option(
            help="CI_PIPELINE_SOURCE: push, web, api, schedule, merge_request_event, ... "
            "(merge_request_event: a merge request from --branch into --default-branch, "
            "with GitLab's CI_MERGE_REQUEST_* variables)"
        ),
    ] = "push",
    var: Annotated[
        list[str] | None, typer.Option("--var", help="Extra variable NAME=VALUE (repeatable).")
    ] = None,
    changed: Annotated[
        list[str] | None,
        typer.Option("--changed", help="A changed file, for rules: changes (repeatable)."),
    ] = None,
    default_branch: Annotated[str, typer.Option(help="CI_DEFAULT_BRANCH.")] = "main",
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Print the plan (or the errors and warnings) as JSON."),
    ] = False,
    strict: Annotated[
        bool, typer.Option("--strict", help="Treat warnings as errors: no plan when any.")
    ] = False,
    inputs: Annotated[list[str] | None, _INPUT_OPTION] = None,
) -> None:
    """Show what a pipeline would run for a trigger: stages, jobs, skipped jobs and why, needs."""
    if branch is not None and tag is not None:
        _usage("give --branch or --tag, not both")
    if branch == "" or tag == "":
        _usage("--branch and --tag need a name, like --branch main or --tag v1.0")
    if source not in PIPELINE_SOURCES:
        _usage(f"unknown --source {source!r}; use one of {', '.join(PIPELINE_SOURCES)}")
    variables: list[tuple[str, str]] = []
    for item in var or []:
        match = _VAR.fullmatch(item)
        if match is None:
            _usage(f"--var {item!r} must look like NAME=VALUE")
        else:
            variables.append((match[1], match[2]))
    if source == "merge_request_event" and tag is not None:
        _usage("a merge request pipeline runs on a branch: give --branch, not --tag")
    file = _pipeline_path(path)
    document = _load(file, as_json, inputs)
    root = Path(document.root_dir)
    head_branch, head_sha = _git_head(root)
    if branch is None and tag is None:
        branch = head_branch or default_branch
    if source == "merge_request_event" and branch is not None:
        # What GitLab gives every merge request pipeline; --var NAME=VALUE overrides any of them.
        variables = [*_merge_request_variables(branch, default_branch), *variables]
    context = TriggerContext(
        source=source,
        branch=branch,
        tag=tag,
        commit_sha=head_sha or TriggerContext.commit_sha,
        default_branch=default_branch,
        project_name=root.name or "project",
        project_dir=f"/builds/{root.name or 'project'}",
        changed_files=tuple(changed) if changed else None,
        variables=tuple(variables),
        server_url=command_server_url(),
    )
    try:
        # include: paths and rules are read for this trigger; remote includes fetched
        with command_fetcher() as remote:
            config, problems = validate_collecting(document, context, remote)
        if config is None or _blocking(problems, strict):
            raise PipelineError("the pipeline has problems", problems=problems)
        result = plan_pipeline(config, context)
    except PipelineError as exc:
        found = exc.problems
        if as_json:
            typer.echo(_problems_json(file, found, planned=False))
        else:
            _print_problems(found)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(result.to_json(indent=2))
        return
    for warning in result.warnings:
        typer.echo(str(warning), err=True)
    _show(result, file)


def _merge_request_variables(source_branch: str, target_branch: str) -> list[tuple[str, str]]:
    """CI_MERGE_REQUEST_* of a made-up merge request !1 from `source_branch` into the target."""
    return [
        ("CI_MERGE_REQUEST_ID", "1"),
        ("CI_MERGE_REQUEST_IID", "1"),
        ("CI_MERGE_REQUEST_REF_PATH", "refs/merge-requests/1/head"),
        ("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME", source_branch),
        ("CI_MERGE_REQUEST_TARGET_BRANCH_NAME", target_branch),
        ("CI_MERGE_REQUEST_EVENT_TYPE", "detached"),
    ]


def _show(result: Plan, file: Path) -> None:
    console = Console(width=max(120, Console().width), highlight=False)
    ref = f"tag {result.ref!r}" if result.is_tag else f"branch {result.ref!r}"
    console.print(f"[bold]{escape(str(file))}[/bold]: {result.source} pipeline for {escape(ref)}")
    if not result.created:
        console.print(f"[yellow]no pipeline[/yellow]: {escape(result.skip_reason or '')}")
        return
    if result.run_reason:
        console.print(f"pipeline created: {escape(result.run_reason)}")
    stages = [s for s in result.stages if any(j.stage == s for j in result.jobs)]
    console.print(escape("stages: " + " → ".join(stages)))
    table = Table(show_lines=False)
    for column in ("stage", "job", "runs", "needs / waits for", "why"):
        table.add_column(column, overflow="fold")
    for job in result.jobs:
        status, after, why = "[dim]skipped[/dim]", "", job.skip_reason or ""
        if job.runs:
            status = "manual" if job.manual else job.when
            if job.start_in_seconds is not None:
                status = f"delayed {_duration(job.start_in_seconds)}"
            if job.allow_failure:
                status += " (may fail)"
            if job.needs is not None:
                after = "needs: " + (", ".join(n.job for n in job.needs) or "nothing")
            else:
                after = ", ".join(job.waits_for) if job.waits_for else "-"
            why = job.run_reason or ""
        table.add_row(escape(job.stage), escape(job.name), status, escape(after), escape(why))
    console.print(table)
    edges = [(a, b) for a, b in result.edges() if result.job(b).needs is not None]
    if edges:
        console.print("needs edges:")
        for upstream, downstream in edges:
            console.print(f"  {escape(upstream)} → {escape(downstream)}")
    triggers = [(job.name, job.trigger) for job in result.runnable_jobs() if job.trigger]
    if triggers:
        console.print("downstream pipelines:")
        for name, trigger in triggers:
            console.print(f"  {escape(name)} triggers {escape(trigger.describe())}")
    runs = len(result.runnable_jobs())
    console.print(f"{runs} job(s) run, {len(result.jobs) - runs} skipped")


def _duration(seconds: int) -> str:
    """A number of seconds as the table shows it: 90 → 1m30s, 3600 → 1h."""
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"


def lint_command(ctx: typer.Context) -> None:
    """Check a pipeline file; print each problem as file:line:col: message."""
    raise typer.Exit(lint_main(list(ctx.args)))


def register(app: typer.Typer) -> None:
    """Add this package's sub-commands to the `kapal` application."""
    # `lint` parses its own arguments (pipeline.lint_command, also run without Typer by `kapal`)
    app.command(
        "lint",
        help=LINT_HELP,
        add_help_option=False,
        context_settings={
            "allow_extra_args": True,
            "ignore_unknown_options": True,
            "help_option_names": [],
        },
    )(lint_command)
    app.command("plan")(plan_command)
