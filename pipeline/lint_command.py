"""`kapal lint`, and what it shares with `kapal plan`: finding, reading and reporting a file.

`lint` parses its own argv (argparse) and `kapal` runs it straight from the command line
(`ARGV_COMMANDS`, see web/cli.py), without Typer or rich: a person runs it on every edit, and
Typer alone (it builds a pydantic adapter per option) costs more than checking a file. Output goes
to stdout/stderr with `print`; a usage error or a failed check ends the command with
`SystemExit(code)`, which `kapal plan` (pipeline/cli.py, its own argv too) passes through.

Exit codes: 0 valid, 1 the pipeline has problems, 2 usage errors (bad options, no such file).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from pipeline.context import TriggerContext
from pipeline.document import PIPELINE_FILE_NAMES, Document, load
from pipeline.errors import PipelineError
from pipeline.remote import command_fetcher, command_server_url
from pipeline.validate import validate_collecting

if TYPE_CHECKING:
    import argparse


LINT_HELP = "Check a pipeline file; print each problem as file:line:col: message."


def _usage(message: str) -> NoReturn:
    print(f"kapal: {message}", file=sys.stderr)
    raise SystemExit(2)


def _pipeline_path(path: Path | None) -> Path:
    """The file to read: PATH itself, the pipeline file of directory PATH, or of the cwd."""
    target = path if path is not None else Path(".")
    if target.is_dir():
        for name in PIPELINE_FILE_NAMES:
            if (target / name).is_file():
                return target / name
        _usage(f"no pipeline file in {target}: expected .kapal.yml or .gitlab-ci.yml")
    if not target.exists():
        _usage(f"{target}: no such file")
    return target


def _print_problems(problems: list[PipelineError]) -> None:
    for problem in problems:
        if problem.severity == "warning":
            where = f"{problem.location}: " if problem.location is not None else ""
            print(f"{where}warning: {problem.message}")
        else:
            print(str(problem))


def _problems_json(path: Path, problems: list[PipelineError], **extra: object) -> str:
    """The JSON document `--json` prints for a file's problems."""
    import json  # only for --json

    shown = [p.as_dict() for p in problems]
    return json.dumps(
        {
            "file": str(path),
            **extra,
            "errors": [p for p in shown if p["severity"] == "error"],
            "warnings": [p for p in shown if p["severity"] == "warning"],
        },
        indent=2,
        ensure_ascii=False,
    )


def _blocking(problems: list[PipelineError], strict: bool) -> list[PipelineError]:
    """The problems that make the command fail: errors, and warnings too with `--strict`."""
    return [p for p in problems if strict or p.severity == "error"]


def _inputs(items: list[str] | None) -> dict[str, object] | None:
    """`--input NAME=VALUE` options as the inputs of the file's `spec: inputs`."""
    if not items:
        return None
    found: dict[str, object] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            _usage(f"--input {item!r} must look like NAME=VALUE")
        found[name] = value
    return found


INPUT_HELP = "A value for the file's `spec: inputs`, NAME=VALUE (repeatable)."


def _load(path: Path, as_json: bool = False, inputs: list[str] | None = None) -> Document:
    try:
        return load(path, inputs=_inputs(inputs))
    except PipelineError as exc:
        problems = exc.problems
        if as_json:
            print(_problems_json(path, problems, valid=False))
            raise SystemExit(1) from None
        _print_problems(problems)
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        print(f"{path}: {count}; it cannot be read as a pipeline", file=sys.stderr)
        raise SystemExit(1) from None


def lint(file: Path | None, as_json: bool, strict: bool, inputs: list[str] | None) -> int:
    """Check a pipeline file; print each problem as file:line:col: message; the exit code."""
    path = _pipeline_path(file)
    document = _load(path, as_json, inputs)
    server_url = command_server_url()  # CI_SERVER_* for include paths, when an instance is set
    context = TriggerContext(branch=TriggerContext().default_branch, server_url=server_url)
    with command_fetcher() as remote:  # include: remote, when the `kapal` entry set one
        config, problems = validate_collecting(document, context if server_url else None, remote)
    failing = _blocking(problems, strict) or config is None
    if as_json:
        jobs = {"jobs": len(config.jobs)} if config is not None else {}
        print(_problems_json(path, problems, valid=not failing, **jobs))
        return 1 if failing else 0
    _print_problems(problems)
    if failing or config is None:
        count = len(problems)
        print(f"{path}: {count} problem{'s' if count != 1 else ''}", file=sys.stderr)
        return 1
    jobs_count = len(config.jobs)
    warned = len(problems)
    note = f", {warned} warning{'s' if warned != 1 else ''}" if warned else ""
    print(f"{path}: valid ({jobs_count} job{'s' if jobs_count != 1 else ''}{note})")
    return 0


LintArgs = tuple[Path | None, bool, bool, list[str] | None]
"""`kapal lint`'s arguments: FILE, --json, --strict and the --input values."""


def plain_lint_args(argv: list[str]) -> LintArgs | None:
    """ARGV when written plainly (FILE, --json, --strict, --input VALUE), else None.

    argparse (with the help formatter, gettext and shutil it loads) costs more than checking a
    small file; these forms mean the same to it, and anything else (--help, `--input=X`, an
    abbreviation, a usage error) goes to `lint_parser()`. tests/test_startup.py checks that both
    read every argv alike.
    """
    file: Path | None = None
    as_json = strict = False
    inputs: list[str] | None = None
    items = iter(argv)
    for item in items:
        if item == "--json":
            as_json = True
        elif item == "--strict":
            strict = True
        elif item == "--input":
            value = next(items, None)
            if value is None or value.startswith("-"):
                return None
            inputs = [*(inputs or ()), value]
        elif item.startswith("-") or file is not None:
            return None
        else:
            file = Path(item)
    return file, as_json, strict, inputs


def lint_main(argv: list[str]) -> int:
    """`kapal lint ARGV`: parse the arguments, check the file; return the exit code."""
    plain = plain_lint_args(argv)
    if plain is not None:
        return lint(*plain)
    args = lint_parser().parse_args(argv)
    return lint(args.file, args.as_json, args.strict, args.inputs)


def lint_parser() -> argparse.ArgumentParser:
    """`kapal lint`'s argparse parser: its --help and its usage errors."""
    import argparse

    parser = argparse.ArgumentParser(prog="kapal lint", description=LINT_HELP)
    parser.add_argument(
        "file",
        metavar="FILE",
        nargs="?",
        type=Path,
        help="Pipeline file or project directory (default: the current one).",
    )
    parser.add_argument(
        "--json", dest="as_json", action="store_true", help="Print errors and warnings as JSON."
    )
    parser.add_argument("--strict", action="store_true", help="Treat warnings as errors (exit 1).")
    parser.add_argument("--input", dest="inputs", action="append", help=INPUT_HELP)
    return parser


# verb -> its `main(argv) -> exit code`, run by `kapal` without Typer (and by its Typer
# application, web.cli.build_app, as a pass-through command with this help)
ARGV_COMMANDS: dict[str, Callable[[list[str]], int]] = {"lint": lint_main}
ARGV_HELP = {"lint": LINT_HELP}
