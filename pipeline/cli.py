"""Sub-commands of `kapal` for this package (registered by `web.cli`): `lint` and `plan`.

`lint` itself lives in `pipeline.lint_command`; `plan` here. Both parse their own argv (argparse)
and `kapal` runs them straight from the command line (`ARGV_COMMANDS`, see web/cli.py), without
Typer: Typer builds a pydantic adapter per option and its `--help` loads rich's Markdown, which
together cost several times what planning a pipeline file does. `kapal plan --help` and a usage
error import neither the loader nor the planner; rich is imported only to print the table (not
with `--json`). `web.cli.build_app()`, the Typer application the tests drive, adds the same
`main(argv)` functions as pass-through commands (with `ARGV_HELP`), so it runs the very same code.

Exit codes: 0 valid, 1 the pipeline has problems, 2 usage errors (bad options, no such file).
Warnings (a duplicate key, an ignored keyword) are printed but keep exit code 0 unless
`--strict`. With `--json`, problems are printed as JSON objects (file, line, column, job,
keyword, message, severity).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.plan import Plan

__all__ = ["ARGV_COMMANDS", "ARGV_HELP", "PLAN_HELP", "plan_main", "plan_parser"]

PLAN_HELP = (
    "Show what a pipeline would run for a trigger: stages, jobs, skipped jobs and why, needs."
)

_INPUT_HELP = "A value for the file's `spec: inputs`, NAME=VALUE (repeatable)."

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


def plan_parser() -> argparse.ArgumentParser:
    """The arguments of `kapal plan`."""
    parser = argparse.ArgumentParser(
        prog="kapal plan", usage="kapal plan [OPTIONS] [PATH]", description=PLAN_HELP
    )
    add = parser.add_argument
    add(
        "path",
        metavar="PATH",
        nargs="?",
        type=Path,
        help="Pipeline file or project directory (default: the current one).",
    )
    add("--branch", metavar="NAME", help="Plan for a push to this branch.")
    add("--tag", metavar="NAME", help="Plan for this tag.")
    add(
        "--source",
        default="push",
        help="CI_PIPELINE_SOURCE: push (the default), web, api, schedule, merge_request_event, "
        "... (merge_request_event: a merge request from --branch into --default-branch, with "
        "GitLab's CI_MERGE_REQUEST_* variables)",
    )
    add(
        "--var",
        metavar="NAME=VALUE",
        action="append",
        default=[],
        help="Extra variable NAME=VALUE (repeatable).",
    )
    add(
        "--changed",
        metavar="FILE",
        action="append",
        default=[],
        help="A changed file, for rules: changes (repeatable).",
    )
    add(
        "--default-branch",
        metavar="NAME",
        default="main",
        help="CI_DEFAULT_BRANCH (default: main).",
    )
    add(
        "--json",
        dest="as_json",
        action="store_true",
        help="Print the plan (or the errors and warnings) as JSON.",
    )
    add("--strict", action="store_true", help="Treat warnings as errors: no plan when any.")
    # the text of pipeline.lint_command.INPUT_HELP; importing that module loads the YAML loader
    add("--input", dest="inputs", metavar="NAME=VALUE", action="append", help=_INPUT_HELP)
    return parser


def _variables(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[tuple[str, str]]:
    """The --var values as (name, value); a usage error (exit 2) for an argument plan cannot use."""
    from pipeline.context import PIPELINE_SOURCES

    if args.branch is not None and args.tag is not None:
        parser.error("give --branch or --tag, not both")
    if args.branch == "" or args.tag == "":
        parser.error("--branch and --tag need a name, like --branch main or --tag v1.0")
    if args.source not in PIPELINE_SOURCES:
        parser.error(f"unknown --source {args.source!r}; use one of {', '.join(PIPELINE_SOURCES)}")
    variables: list[tuple[str, str]] = []
    for item in args.var:
        match = _VAR.fullmatch(item)
        if match is None:
            parser.error(f"--var {item!r} must look like NAME=VALUE")
        variables.append((match[1], match[2]))
    if args.source == "merge_request_event" and args.tag is not None:
        parser.error("a merge request pipeline runs on a branch: give --branch, not --tag")
    return variables


def plan_main(argv: list[str]) -> int:
    """`kapal plan ARGV`: show what the pipeline would run for the trigger; the exit code."""
    parser = plan_parser()
    args = parser.parse_args(argv)  # a usage error exits 2
    variables = _variables(parser, args)
    return _plan(args, variables)


def _plan(args: argparse.Namespace, variables: list[tuple[str, str]]) -> int:
    """Load, check and plan the file for the trigger `args` describe; print it; the exit code."""
    from pipeline.context import TriggerContext
    from pipeline.errors import PipelineError
    from pipeline.lint_command import (
        _blocking,
        _load,
        _pipeline_path,
        _print_problems,
        _problems_json,
    )
    from pipeline.planner import plan as plan_pipeline
    from pipeline.remote import command_fetcher, command_server_url
    from pipeline.validate import validate_collecting

    branch: str | None = args.branch
    tag: str | None = args.tag
    source: str = args.source
    default_branch: str = args.default_branch
    file = _pipeline_path(args.path)
    document = _load(file, args.as_json, args.inputs)
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
        changed_files=tuple(args.changed) if args.changed else None,
        variables=tuple(variables),
        server_url=command_server_url(),
    )
    try:
        # include: paths and rules are read for this trigger; remote includes fetched
        with command_fetcher() as remote:
            config, problems = validate_collecting(document, context, remote)
        if config is None or _blocking(problems, args.strict):
            raise PipelineError("the pipeline has problems", problems=problems)
        result = plan_pipeline(config, context)
    except PipelineError as exc:
        found = exc.problems
        if args.as_json:
            print(_problems_json(file, found, planned=False))
        else:
            _print_problems(found)
        return 1
    if args.as_json:
        print(result.to_json(indent=2))
        return 0
    for warning in result.warnings:
        print(str(warning), file=sys.stderr)
    _show(result, file)
    return 0


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
    """Print the plan as a table (rich: imported only for this, the human-readable output)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

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


# verb -> its `main(argv) -> exit code`, run by `kapal` without Typer; `kapal`'s Typer
# application (web.cli.build_app, what tests drive) passes the same argv to it, with this help
ARGV_COMMANDS: dict[str, Callable[[list[str]], int]] = {"plan": plan_main}
ARGV_HELP = {"plan": PLAN_HELP}
