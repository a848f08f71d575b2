"""The import budget of kapal's start-up: what the quick commands may not import.

A person runs `kapal version`, `kapal --help`, `kapal exec`, `kapal build` and `kapal run` all
day, and their start-up is what they wait for (issue 11). Each test runs the command as a
subprocess under `python -X importtime` and reads the modules it imported; no wall-clock threshold
(the machine's load would make one flaky), but a heavy import creeping back into a quick path
fails here.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from pipeline.lint_command import lint_parser, plain_lint_args
from runner.build.memo import RACY_NS
from web.cli import COMMAND_MODULES, COMMAND_SUMMARIES, build_app

# what the installed `kapal` script runs
ENTRY = "import sys; from web.cli import main; sys.exit(main())"
# Third-party libraries that cost tens of milliseconds each to import. Typer builds a pydantic
# adapter per option, so it counts as pydantic too.
HEAVY = ("typer", "click", "pydantic", "pydantic_settings", "rich", "httpx", "sqlalchemy")


def imported_by(env: dict[str, str] | None, *args: str) -> tuple[set[str], str]:
    """The modules `kapal ARGS` imports (read from -X importtime), and what it printed."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", ENTRY, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    modules = {
        line.split("|")[2].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert modules, f"no -X importtime output: {done.stderr[-500:]}"
    assert done.returncode in (0, 2), done.stderr[-2000:]
    return modules, done.stdout


def heavy_in(modules: set[str], *more: str) -> list[str]:
    """The modules in `modules` that belong to a heavy package or to one of `more`."""
    forbidden = (*HEAVY, *more)
    return sorted(
        m for m in modules if m in forbidden or m.startswith(tuple(f + "." for f in forbidden))
    )


def pipeline_modules(modules: set[str]) -> list[str]:
    """The modules of the pipeline package in `modules`, sorted."""
    return sorted(m for m in modules if m.split(".")[0] == "pipeline")


def test_version_imports_nothing_but_the_entry_point() -> None:
    modules, out = imported_by(None, "version")
    assert out == f"kapal {importlib.metadata.version('kapal')}\n"
    assert heavy_in(modules, "runner", "pipeline", "importlib.metadata", "yaml") == []
    assert sorted(m for m in modules if m.split(".")[0] == "web") == ["web", "web.cli"]


@pytest.mark.parametrize("args", [["--help"], []])
def test_help_lists_every_command_without_importing_them(args: list[str]) -> None:
    modules, out = imported_by(None, *args)
    assert heavy_in(modules, "runner", "pipeline", "yaml") == []
    listed = {
        line.split()[0]: " ".join(line.split()[1:]) for line in out.splitlines() if line[:2] == "  "
    }
    assert listed == {
        **{verb: COMMAND_SUMMARIES[verb] for verb in COMMAND_MODULES},
        "version": COMMAND_SUMMARIES["version"],
    }


def test_each_summary_is_its_commands_own_help() -> None:
    # `kapal --help` shows COMMAND_SUMMARIES without importing the verbs' modules; each must
    # say what the command's own help says (the first paragraph), and every verb needs one.
    app = typer.main.get_command(build_app())
    context = typer.Context(app)
    for verb in sorted({*COMMAND_MODULES, "version"}):
        command = app.get_command(context, verb)  # type: ignore[attr-defined]
        first = " ".join((command.help or "").split("\n\n")[0].split())
        assert COMMAND_SUMMARIES.get(verb) == first, (
            f"web/cli.py: set COMMAND_SUMMARIES[{verb!r}] = {first!r} (what `kapal --help` shows)"
        )


def test_a_verb_still_gets_its_help_and_an_unknown_one_an_error() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "web.cli", "nosuch"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2
    assert "No such command 'nosuch'" in done.stderr
    shown = CliRunner().invoke(build_app(), ["exec", "--help"])
    assert shown.exit_code == 0
    assert "--disk" in shown.stdout and "no size cap" in shown.stdout


def test_exec_starts_without_typer_pydantic_or_the_settings(
    kapal_env: dict[str, str], busybox_image: str
) -> None:
    imported_by(kapal_env, "exec", busybox_image, "--", "true")  # unpacks the image if need be
    modules, out = imported_by(kapal_env, "exec", busybox_image, "--", "echo", "ran")
    assert out == "ran\n"
    assert heavy_in(modules, "runner.settings", "runner.engine", "web.client") == []
    # of the pipeline package, only `@record` (the runtime's and the image store's value types)
    assert pipeline_modules(modules) in ([], ["pipeline", "pipeline.records"])
    # no disk cap asked for, no NAT, an image already unpacked: none of their code is loaded
    # (nor uuid, socket or platform, which the runtime does without)
    assert (
        heavy_in(
            modules,
            "runner.runtime.disk",
            "runner.runtime.loopdev",
            "runner.runtime.usernet",
            "runner.images.layers",
            "tarfile",
            "tempfile",
            "filelock",
            "uuid",
            "socket",
            "platform",
            # the records' field collection and replace() are their own; the plain argv is
            # read without argparse (pipeline.records, runner.runtime.cli)
            "dataclasses",
            "inspect",
            "argparse",
            "gettext",
            # manifests, configs and the run dir's name are hashed by CPython's own SHA-256
            # (runner.text_digest): loading OpenSSL costs 2.5 ms
            "hashlib",
        )
        == []
    )


def test_a_warm_build_starts_without_typer_pydantic_or_the_runtime(
    kapal_env: dict[str, str], busybox_image: str, tmp_path: Path
) -> None:
    (tmp_path / "Dockerfile").write_text(f"FROM {busybox_image}\nCOPY a.txt /a.txt\n")
    (tmp_path / "a.txt").write_text("a\n")
    time.sleep(RACY_NS / 1e9 + 0.05)  # files a person saved a moment ago: a memo may trust them
    args = ("build", "--network", "none", "-t", "startup-test:1", str(tmp_path))
    imported_by(kapal_env, *args)  # the first build fills the cache and records its memo
    unchanged, out = imported_by(kapal_env, *args)
    assert "CACHED" in out
    # answered by the build memo: no builder, no image store, not even dataclasses
    assert heavy_in(unchanged, "pipeline", "runner.settings", "runner.engine", "web.client") == []
    assert (
        heavy_in(
            unchanged,
            "runner.build.builder",
            "runner.build.dockerfile",
            "runner.images.store",
            "runner.runtime.backend",
            "dataclasses",
            "hashlib",
            "tarfile",
        )
        == []
    )
    os.utime(tmp_path / "a.txt")  # touched: the memo cannot answer, the builder's cache does
    warm, out = imported_by(kapal_env, *args)
    assert "CACHED" in out
    assert "runner.build.builder" in warm
    assert heavy_in(warm, "runner.settings", "runner.engine", "web.client") == []
    assert pipeline_modules(warm) in ([], ["pipeline", "pipeline.records"])
    # nothing to run: the container runtime is not even imported, nor what only RUN --mount,
    # ADD of a git repository or a cache miss need
    assert (
        heavy_in(
            warm,
            "runner.runtime.embedded",
            "runner.runtime.backend",
            "filelock",
            "runner.build.mounts",
            "runner.build.gitsource",
            "uuid",
        )
        == []
    )


def test_lint_checks_a_file_without_typer_or_the_runner(tmp_path: Path) -> None:
    (tmp_path / ".kapal.yml").write_text("job:\n  script: [echo hi]\n")
    modules, out = imported_by(None, "lint", str(tmp_path))
    assert out == f"{tmp_path / '.kapal.yml'}: valid (1 job)\n"
    # a check needs the loader and the validator, not the planner (pipeline/__init__ is lazy)
    assert heavy_in(modules, "runner", "pipeline.planner", "pipeline.predefined") == []
    # nor what only some files or options need: RE2 (a /regex/), difflib (a misspelt word),
    # hashing (`integrity:`), JSON (--json), argparse and its formatter's shutil (--help, a
    # usage error), the installed metadata
    assert heavy_in(modules, *LINT_LOADS_LATER) == []


# what `kapal lint` of a small valid file does not import
LINT_LOADS_LATER = (
    "re2",
    "difflib",
    "hashlib",
    "hmac",
    "json",
    "argparse",
    "shutil",
    "importlib.metadata",
    "pipeline.inputs",
)


def test_lint_builds_no_dataclass_by_compiling_code(tmp_path: Path) -> None:
    # `@dataclass(frozen=True)` compiles six methods per class at every start (about 0.5 ms a
    # class); the pipeline's frozen types are `@record`s instead (pipeline/records.py). A new
    # frozen dataclass in a module `kapal lint` loads must be one too.
    (tmp_path / ".kapal.yml").write_text("job:\n  script: [echo hi]\n")
    modules, _ = imported_by(None, "lint", str(tmp_path))
    compiled = []
    for name in sorted(m for m in modules if m.startswith("pipeline.")):
        for value in vars(importlib.import_module(name)).values():
            own_class = isinstance(value, type) and value.__module__ == name
            frozen = getattr(getattr(value, "__dataclass_params__", None), "frozen", False)
            if own_class and frozen and value.__init__.__module__ != "pipeline.records":
                compiled.append(f"{name}.{value.__qualname__}")
    assert compiled == [], "make these @record (pipeline/records.py)"
    assert "pipeline.plan" in modules  # the check above saw the types a lint builds


def test_run_list_starts_without_typer_the_settings_or_the_runtime(tmp_path: Path) -> None:
    # `kapal run --list` may import the pipeline package (with yaml), rich (its table), and the
    # small runner modules a plan needs (errors, secrets, limits, the working tree's file list).
    (tmp_path / ".kapal.yml").write_text("job:\n  image: busybox\n  script: [echo hi]\n")
    modules, out = imported_by(None, "run", "--list", str(tmp_path))
    assert "job" in out and "busybox" in out
    unexpected = heavy_in(
        modules,
        "runner.settings",
        "runner.engine.job_runner",
        "runner.runtime.embedded",
        "runner.images.registry",
        "runner.ship",
        "filelock",
        "web.client",
    )
    assert [m for m in unexpected if m.split(".")[0] != "rich"] == []


def test_run_starts_without_typer_pydantic_or_the_http_client(
    kapal_env: dict[str, str], busybox_image: str, tmp_path: Path
) -> None:
    # A run imports the engine and the runtime, but not Typer (argparse reads its options), nor
    # pydantic (its settings are read from the environment directly), nor httpx (only a pull or
    # push talks to a registry), nor the service's database, nor the web package.
    project = tmp_path / "project"
    project.mkdir()
    (project / ".kapal.yml").write_text(f"job:\n  image: {busybox_image}\n  script: [echo ran]\n")
    modules, out = imported_by(kapal_env, "run", str(project))
    assert "[job] ran" in out and "success" in out
    # rich prints the summary; the settings are read without pydantic (runner.settings_env)
    assert heavy_in(modules, "runner.settings") == sorted(
        m for m in modules if m.split(".")[0] == "rich"
    )
    assert {"typer", "click", "pydantic", "httpx", "sqlalchemy"}.isdisjoint(modules)
    # no `build:` job: the Dockerfile builder is not imported
    assert [m for m in modules if m.startswith("runner.build")] == []
    # nothing ships: neither the shipper (with its HTTP client) nor filelock is imported
    assert [m for m in modules if m.startswith("runner.ship")] == []
    assert {"filelock", "http.client"}.isdisjoint(modules)
    assert sorted(m for m in modules if m.split(".")[0] == "web") == ["web", "web.cli"]
    assert "runner.engine.job_runner" in modules  # the check above saw a real run's imports


LINT_WORDS = [
    "--json",
    "--strict",
    "--input",
    "A=1",
    "B=",
    "",
    "-",
    "--",
    "-1",
    "--js",
    "--input=C=2",
    "-h",
    "x.yml",
    "some dir",
    "--help",
    "-x",
]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(LINT_WORDS), max_size=6))
def test_lint_reads_plain_argv_as_argparse_does(argv: list[str]) -> None:
    # `kapal lint` parses the plain forms itself (argparse costs more than checking a small
    # file) and leaves the rest to argparse: whatever it parses, argparse must read alike.
    plain = plain_lint_args(argv)
    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            parsed = lint_parser().parse_args(argv)
    except SystemExit:
        assert plain is None, f"{argv}: argparse refuses it, the plain reader took it"
        return
    if plain is not None:
        assert plain == (parsed.file, parsed.as_json, parsed.strict, parsed.inputs)


def test_plain_lint_argv_needs_no_argparse() -> None:
    assert plain_lint_args(["--strict", "x.yml", "--input", "A=1", "--input", "B=2"]) == (
        Path("x.yml"),
        False,
        True,
        ["A=1", "B=2"],
    )
    assert plain_lint_args(["--help"]) is None


def test_the_readme_lists_every_command_with_its_summary() -> None:
    # README.md's "Commands" table: one row per verb, saying what `kapal --help` says of it.
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("\n## Commands\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.split(" | ") for line in section.splitlines() if line.startswith("| `kapal ")]
    listed = {row[0].split()[2].rstrip("`"): row[1].rstrip(" |") for row in rows}
    assert len(rows) == len(listed), "a command is listed twice"
    assert listed == {verb: COMMAND_SUMMARIES[verb] for verb in {*COMMAND_MODULES, "version"}}


# the verbs that talk to a kapal server (web/client_cli.py)
CLIENT_VERBS = (
    "repo",
    "trigger",
    "pipelines",
    "pipeline",
    "logs",
    "cancel",
    "retry",
    "play",
    "rollback",
)
# Every verb a person types at a terminal answers `--help` (and a usage error) without Typer,
# pydantic or rich; the long-running server verbs (serve, worker, migrate, token) keep Typer.
EVERYDAY_HELP = [
    ["plan", "--help"],
    ["plan", "--source", "pigeon"],
    ["image", "--help"],
    ["image", "ls", "--help"],
    ["image"],
    ["services", "--help"],
    ["services", "stop", "--help"],
    ["services", "bogus"],
    ["deployments", "--help"],
    ["deployments", "a", "b"],
    ["deployments", "--json", "--bogus"],
    *([verb, "--help"] for verb in CLIENT_VERBS),
    ["repo"],
    ["pipelines", "--limit", "0"],
    ["logs"],
    ["repo", "add", "acme/shop"],
]


@pytest.mark.parametrize("args", EVERYDAY_HELP, ids=" ".join)
def test_everyday_verbs_answer_help_without_typer_or_pydantic(
    args: list[str], tmp_path: Path
) -> None:
    env = {**os.environ, "KAPAL_DATA_DIR": str(tmp_path / "data")}
    modules, _ = imported_by(env, *args)
    assert (
        heavy_in(
            modules,
            "runner.settings",
            "runner.settings_env",
            "yaml",
            "web.settings",
            "web.client",
            # the shipper, its services and its records (runner.ship.cli holds the local
            # verbs' parsers: `deployments` without a server reads its help there)
            "runner.ship.services",
            "runner.ship.local",
            "runner.ship.keeper",
            "runner.ship.deployments",
            "runner.ship.settings",
            "filelock",
        )
        == []
    )


def test_plan_loads_the_planner_but_no_runner_typer_or_pydantic(tmp_path: Path) -> None:
    (tmp_path / ".kapal.yml").write_text("job:\n  script: [echo hi]\n")
    modules, out = imported_by(None, "plan", str(tmp_path), "--branch", "main", "--json")
    assert '"job"' in out
    assert heavy_in(modules, "runner") == []
    assert "pipeline.planner" in modules  # the check above saw a real plan's imports
    table, out = imported_by(None, "plan", str(tmp_path), "--branch", "main")
    assert "job" in out
    # the table is rich's; nothing else heavy
    assert [m for m in heavy_in(table, "runner") if m.split(".")[0] != "rich"] == []


def test_image_ls_reads_the_store_without_the_settings_or_the_registry_client(
    kapal_env: dict[str, str], busybox_image: str
) -> None:
    modules, out = imported_by(kapal_env, "image", "ls")
    assert busybox_image.split(":")[0] in out
    assert (
        heavy_in(
            modules,
            "runner.settings",
            "runner.settings_env",
            "runner.images.registry",
            "runner.images.progress",
            "filelock",
        )
        == []
    )
    assert "runner.images.store" in modules  # the check above saw a real listing's imports


def test_deployments_reads_the_records_without_the_shipper(
    kapal_env: dict[str, str],
) -> None:
    modules, _ = imported_by(kapal_env, "deployments")
    assert heavy_in(modules, "runner.settings", "runner.ship.services", "filelock") == []
