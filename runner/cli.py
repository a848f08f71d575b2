"""`kapal run`: run a pipeline on this machine (registered on the `kapal` app by `web.cli`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from filelock import FileLock
from rich.console import Console
from rich.table import Table

import pipeline
from pipeline.errors import PipelineError
from runner.artifacts import ArtifactStore
from runner.cache import CacheStore
from runner.engine import Engine, EngineOptions, PipelineResult
from runner.engine.recorder import PipelineStatus
from runner.engine.workspace import InPlaceTree, WorkingTreeSource, working_tree_files
from runner.errors import RunnerError, WorkspaceError
from runner.images.resolve import ImageResolver
from runner.images.store import ImageStore
from runner.job_images import StoreImageProvider, embedded_builder
from runner.owners import local_owner
from runner.runtime.backend import Limits
from runner.runtime.durations import format_duration
from runner.runtime.embedded import EmbeddedBackend
from runner.runtime.fake import FakeBackend
from runner.runtime.quantities import parse_size
from runner.secrets import PipelineAccess, load_secrets, secrets_for
from runner.settings import RunnerSettings
from runner.ship.deploy import describe_deploy
from runner.ship.settings import local_shipper
from runner.terminal import LiveRecorder, PlainRecorder

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_CANCELED = 130
LOCAL_PIPELINES_KEPT = 20  # artifacts of older local runs are removed


def _git(directory: Path, *args: str) -> str:
    try:
        done = subprocess.run(
            ["git", *args], cwd=directory, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return ""
    return done.stdout.strip()


def trigger_for(
    project: Path,
    *,
    branch: str | None,
    source: str,
    variables: list[tuple[str, str]],
    pipeline_id: int,
) -> pipeline.TriggerContext:
    """The trigger of a local run: the working tree's branch and commit, or sensible defaults."""
    sha = _git(project, "rev-parse", "HEAD") or "0" * 40
    current = _git(project, "rev-parse", "--abbrev-ref", "HEAD")
    name = project.resolve().name or "project"
    return pipeline.TriggerContext(
        source=source,
        branch=branch or (current if current and current != "HEAD" else "main"),
        commit_sha=sha,
        commit_message=_git(project, "log", "-1", "--format=%B"),
        commit_timestamp=_git(project, "log", "-1", "--format=%cI"),
        commit_author=_git(project, "log", "-1", "--format=%an <%ae>"),
        project_name=name,
        project_path=name,
        project_dir=f"/builds/{name}",
        pipeline_id=pipeline_id,
        project_files=tuple(str(p) for p in working_tree_files(project)),
        variables=tuple(variables),
    )


def parse_vars(entries: list[str]) -> list[tuple[str, str]]:
    """`--var K=V` options as pairs; `typer.BadParameter` for an entry without `=`."""
    pairs = []
    for entry in entries:
        key, sep, value = entry.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{entry!r}: expected NAME=value", param_hint="--var")
        pairs.append((key.strip(), value))
    return pairs


def next_pipeline_id(data_dir: Path) -> int:
    """A pipeline number for a local run, counting up per data dir."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # artifacts and caches live here
    counter = data_dir / "local-pipelines"
    with FileLock(str(counter) + ".lock"):
        try:
            last = int(counter.read_text().strip() or "0")
        except (FileNotFoundError, ValueError):
            last = 0
        counter.write_text(f"{last + 1}\n")
    return last + 1


@contextmanager
def cancel_on_signals(engine: Engine, console: Console) -> Iterator[None]:
    """Turn SIGINT/SIGTERM into `engine.cancel()` while the run lasts."""
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    signals_seen: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        signals_seen.append(signum)
        if len(signals_seen) == 1:
            console.print(
                "[magenta]kapal: canceling the pipeline (stopping containers; after_script still "
                "runs, interrupt again to stop it too)...[/]"
            )
        else:
            console.print("[magenta]kapal: stopping after_script containers too...[/]")
        threading.Thread(target=engine.cancel, name="kapal-cancel", daemon=True).start()

    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _list(the_plan: pipeline.Plan, console: Console) -> None:
    table = Table(show_edge=False, pad_edge=False)
    for column in ("stage", "job", "when", "needs", "note"):
        table.add_column(column)
    for job in the_plan.jobs:
        if job.deploy is not None:
            note = describe_deploy(job.deploy)
        elif job.build is not None:
            note = "build: " + ", ".join(job.build.tags)
        else:
            note = job.image.name if job.image else ""
        if job.skip_reason:
            note = f"skipped: {job.skip_reason}"
        needs = "" if job.needs is None else ", ".join(n.job for n in job.needs) or "[]"
        table.add_row(job.stage, job.name, job.when, needs, note)
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add `kapal run` to the `kapal` application."""

    @app.command("run")
    def run_command(
        path: Annotated[
            Path, typer.Argument(help="Project directory or pipeline file (default: .).")
        ] = Path("."),
        job: Annotated[
            list[str] | None,
            typer.Option("--job", "-j", help="Run this job (and what it needs); repeatable."),
        ] = None,
        stage: Annotated[
            str | None, typer.Option("--stage", help="Run this stage's jobs (and what they need).")
        ] = None,
        branch: Annotated[
            str | None, typer.Option("--branch", help="Branch the pipeline runs for.")
        ] = None,
        source: Annotated[
            str, typer.Option("--source", help="CI_PIPELINE_SOURCE (push, web, schedule...).")
        ] = "push",
        var: Annotated[
            list[str] | None, typer.Option("--var", help="Extra variable NAME=value; repeatable.")
        ] = None,
        secrets_file: Annotated[
            Path | None,
            typer.Option(
                "--secrets-file",
                help="NAME=value lines, values masked in logs; `protected NAME=value` only "
                "reaches pipelines of the default branch.",
            ),
        ] = None,
        manual: Annotated[bool, typer.Option("--manual", help="Run manual jobs too.")] = False,
        list_jobs: Annotated[bool, typer.Option("--list", help="List the jobs and exit.")] = False,
        dry_run: Annotated[
            bool, typer.Option("--dry-run", help="Plan and check images; run nothing.")
        ] = False,
        jobs: Annotated[int, typer.Option("--jobs", min=1, help="Jobs run at once.")] = 4,
        no_cache: Annotated[
            bool,
            typer.Option(
                "--no-cache",
                help="Neither restore nor save job caches; build images without the layer cache.",
            ),
        ] = False,
        in_place: Annotated[
            bool,
            typer.Option(
                "--in-place",
                help="Mount the project directory itself into every job instead of a copy: "
                "what jobs write (artifacts and caches restored too) stays in your tree.",
            ),
        ] = False,
        memory: Annotated[
            str | None,
            typer.Option(help="Memory of each container, e.g. 2g (default KAPAL_JOB_MEMORY)."),
        ] = None,
        cpus: Annotated[
            float | None,
            typer.Option(min=0.01, help="CPUs of each container, e.g. 1.5 (KAPAL_JOB_CPUS)."),
        ] = None,
        pids: Annotated[
            int | None,
            typer.Option(min=1, help="Processes per container (default KAPAL_JOB_PIDS)."),
        ] = None,
    ) -> None:
        """Run a pipeline here: every job in a container, no server needed."""
        console = Console()
        if source not in pipeline.PIPELINE_SOURCES:
            raise typer.BadParameter(
                f"{source!r} is not a pipeline source; use one of: "
                + ", ".join(pipeline.PIPELINE_SOURCES),
                param_hint="--source",
            )
        variables = parse_vars(var or [])
        try:
            code = _run(
                path=path,
                only=frozenset(job or ()),
                stage=stage,
                branch=branch,
                source=source,
                variables=variables,
                secrets_file=secrets_file,
                manual=manual,
                list_jobs=list_jobs,
                dry_run=dry_run,
                concurrency=jobs,
                use_cache=not no_cache,
                in_place=in_place,
                limits=(memory, cpus, pids),
                console=console,
            )
        except PipelineError as exc:
            for problem in exc.problems:
                typer.echo(f"error: {problem}", err=True)
            raise typer.Exit(EXIT_BAD_INPUT) from None
        except RunnerError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(EXIT_BAD_INPUT) from None
        raise typer.Exit(code)


def _run(
    *,
    path: Path,
    only: frozenset[str],
    stage: str | None,
    branch: str | None,
    source: str,
    variables: list[tuple[str, str]],
    secrets_file: Path | None,
    manual: bool,
    list_jobs: bool,
    dry_run: bool,
    concurrency: int,
    use_cache: bool,
    in_place: bool,
    limits: tuple[str | None, float | None, int | None],
    console: Console,
) -> int:
    if not path.exists():
        raise WorkspaceError(f"{path}: no such file or directory; pass the project directory")
    if path.is_file():
        pipeline_file, project = path, path.parent
    else:
        project = path
        pipeline_file = pipeline.find_pipeline_file(project)
    settings = RunnerSettings()
    policy = settings.container_policy()
    memory, cpus, pids = limits
    asked = Limits(
        memory_bytes=parse_size(memory, what="--memory") if memory else None, cpus=cpus, pids=pids
    )
    policy.check_limits(asked)
    secrets = load_secrets(os.environ, secrets_file)
    pipeline_id = next_pipeline_id(settings.data_dir) if not (list_jobs or dry_run) else 0
    context = trigger_for(
        project, branch=branch, source=source, variables=variables, pipeline_id=pipeline_id
    )
    the_plan = pipeline.plan(pipeline.load(pipeline_file, root_dir=project), context)
    if not the_plan.created:
        console.print(f"no pipeline: {the_plan.skip_reason}")
        return 0
    for notice in the_plan.warnings:  # what kapal plans around (ignored keywords, ...)
        console.print(str(notice), style="yellow", markup=False, highlight=False, soft_wrap=True)
    if list_jobs:
        _list(the_plan, console)
        return 0
    store = ImageStore(settings.images_dir)
    # a local run belongs to its project; the default branch counts as protected, as in GitLab
    owner, access = local_owner(project), PipelineAccess.of_trigger(context)
    options = EngineOptions(
        concurrency=concurrency,
        manual=manual,
        only=only,
        stage=stage,
        use_cache=use_cache,
        project_dir=context.project_dir,
        secrets=secrets_for(access, secrets),
        limits=policy.limits_for(asked),
        workspace_disk_bytes=policy.disk_bytes,
        ship=local_shipper(settings, store, owner, pipeline_id, secrets_for(access, secrets)),
    )
    interactive = sys.stdout.isatty()
    if interactive:
        recorder: LiveRecorder | PlainRecorder = LiveRecorder(console, only)
    else:
        recorder = PlainRecorder(sys.stdout, only)
    artifacts = ArtifactStore(settings.data_dir / "artifacts")
    caches = CacheStore(settings.data_dir / "cache", owner, protected=access.protected)
    resolver = ImageResolver(store, settings)
    if dry_run:
        engine = Engine(
            backend=FakeBackend(),
            images=StoreImageProvider(store, resolver=resolver, owner=owner),
            recorder=recorder,
            work_dir=settings.data_dir / "runs",
            artifacts=artifacts,
            caches=caches,
            options=options,
        )
        selected = engine.selected_jobs(the_plan)
        engine.check_images(the_plan, selected)
        _list(the_plan, console)
        console.print(f"dry run: {len(selected)} job(s) would run; images are in the store")
        return 0
    backend = EmbeddedBackend(settings, policy)
    engine = Engine(
        backend=backend,
        images=StoreImageProvider(
            store,
            embedded_builder(backend, settings.build_cache_dir),
            resolver,
            owner=owner,
            secrets=[secret.value for secret in secrets.values()],
        ),
        recorder=recorder,
        work_dir=settings.data_dir / "runs",
        artifacts=artifacts,
        caches=caches,
        options=options,
    )
    artifacts.prune(keep=LOCAL_PIPELINES_KEPT - 1)
    live = recorder if isinstance(recorder, LiveRecorder) else nullcontext()
    with cancel_on_signals(engine, console), live:
        result = engine.run(
            the_plan,
            InPlaceTree(project) if in_place else WorkingTreeSource(project),
            pipeline_id=pipeline_id,
        )
    console.print()
    recorder.print_summary(console)
    console.print(f"pipeline #{pipeline_id} {result.status.value} in {_seconds(result)}")
    if result.status == PipelineStatus.CANCELED:
        return EXIT_CANCELED
    return 0 if result.passed else EXIT_FAILED


def _seconds(result: PipelineResult) -> str:
    return format_duration(result.duration)
