"""`kapal run`: run a pipeline on this machine (registered on the `kapal` app by `web.cli`).

The command parses its own argv (argparse) and `kapal` runs it without Typer (`ARGV_COMMANDS`):
most of a small pipeline's time was start-up. What a run needs (the engine, the runtime, rich)
is imported once the arguments are read; the settings are `RunnerSettings`' variables read
without pydantic (`runner.settings_env`), and `--list` reads none. Nothing on the path imports
the registry's HTTP client unless an image is pulled or pushed, nor the Dockerfile builder unless
a `build:` job runs. tests/test_startup.py holds these import budgets.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, NamedTuple

from pipeline.errors import PipelineError
from runner.argv_commands import ArgvMain, register_argv_command
from runner.errors import RunnerError, WorkspaceError

if TYPE_CHECKING:
    import typer
    from rich.console import Console

    import pipeline
    from runner.engine import Engine, PipelineResult
    from runner.remote_includes import HttpFetcher
    from runner.runtime.backend import Limits
    from runner.secrets import Secret
    from runner.settings_env import EnvSettings

RUN_HELP = "Run a pipeline here: every job in a container, no server needed."
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_CANCELED = 130
LOCAL_PIPELINES_KEPT = 20  # artifacts of older local runs are removed


# the commit's sha, committer date, author and message, NUL-separated
COMMIT_FORMAT = "%H%x00%cI%x00%an <%ae>%x00%B"


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
    server_url: str = "",
) -> pipeline.TriggerContext:
    """The trigger of a local run: the working tree's branch and commit, or sensible defaults
    (`server_url`: the GitLab instance CI_SERVER_* name)."""
    import pipeline
    from runner.engine.workspace import working_tree_files

    # one `git log` for the commit's fields (the message last: it is the one free-form field);
    # none of them when there is no commit (not a repository, or no commit yet)
    commit = _git(project, "log", "-1", "--no-show-signature", f"--format={COMMIT_FORMAT}")
    sha, timestamp, author, message = [*commit.split("\0", 3), "", "", "", ""][:4]
    current = _git(project, "rev-parse", "--abbrev-ref", "HEAD")
    name = project.resolve().name or "project"
    return pipeline.TriggerContext(
        source=source,
        branch=branch or (current if current and current != "HEAD" else "main"),
        commit_sha=sha.strip() or "0" * 40,
        commit_message=message.strip(),
        commit_timestamp=timestamp.strip(),
        commit_author=author.strip(),
        project_name=name,
        project_path=name,
        project_dir=f"/builds/{name}",
        pipeline_id=pipeline_id,
        project_files=tuple(str(p) for p in working_tree_files(project)),
        variables=tuple(variables),
        server_url=server_url,
    )


class UsageError(ValueError):
    """A command-line argument `kapal run` cannot use (exit 2, like argparse's own errors)."""


def parse_vars(entries: list[str]) -> list[tuple[str, str]]:
    """`--var K=V` options as pairs; `UsageError` for an entry without `=`."""
    pairs = []
    for entry in entries:
        key, sep, value = entry.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"argument --var: {entry!r}: expected NAME=value")
        pairs.append((key.strip(), value))
    return pairs


def next_pipeline_id(data_dir: Path) -> int:
    """A pipeline number for a local run, counting up per data dir."""
    import fcntl  # the stdlib lock: filelock costs ~15 ms to import at every run

    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # artifacts and caches live here
    counter = data_dir / "local-pipelines"
    fd = os.open(str(counter) + ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # held while the counter is read and written
        try:
            last = int(counter.read_text().strip() or "0")
        except (FileNotFoundError, ValueError):
            last = 0
        counter.write_text(f"{last + 1}\n")
    finally:
        os.close(fd)  # releases the lock
    return last + 1


def ships(plan: pipeline.Plan) -> bool:
    """Whether a job of `plan` may need the shipper: a build (its push), a deploy, an
    environment's deployment record, or a child pipeline (which may hold any of those)."""
    return any(
        job.build is not None
        or job.deploy is not None
        or job.environment is not None
        or job.trigger is not None
        for job in plan.jobs
    )


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


def describe_deploy(spec: pipeline.DeploySpec) -> str:
    """What a `deploy:` job ships where, for job listings."""
    where = [f"to {spec.to}"] if spec.to else []
    if spec.service is not None:
        port = f" on 127.0.0.1:{spec.service.host_port}" if spec.service.host_port else ""
        where.append(f"as service {spec.service.name}{port}")
    return f"deploy: {spec.image} " + " and ".join(where)


def _list(the_plan: pipeline.Plan, console: Console) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(show_edge=False, pad_edge=False)
    for column in ("stage", "job", "when", "needs", "note"):
        table.add_column(column)
    for job in the_plan.jobs:
        if job.deploy is not None:
            note = describe_deploy(job.deploy)
        elif job.build is not None:
            note = "build: " + ", ".join(job.build.tags)
        elif job.trigger is not None:
            note = "triggers " + job.trigger.describe()
        else:
            note = job.image.name if job.image else ""
        if job.skip_reason:
            note = f"skipped: {job.skip_reason}"
        needs = "" if job.needs is None else ", ".join(n.job for n in job.needs) or "[]"
        # plain text: `build: [a]` and `job [trigger]` are no markup
        table.add_row(*(Text(cell) for cell in (job.stage, job.name, job.when, needs, note)))
    console.print(table)


def _at_least(kind: type[int] | type[float], minimum: float) -> Callable[[str], float]:
    """An argparse type: a number of `kind` no smaller than `minimum`."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a valid {kind.__name__}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text} is smaller than the minimum {minimum}")
        return value

    return parse


def run_parser() -> argparse.ArgumentParser:
    """The arguments of `kapal run`."""
    parser = argparse.ArgumentParser(
        prog="kapal run", usage="kapal run [OPTIONS] [PATH]", description=RUN_HELP
    )
    add = parser.add_argument
    add(
        "path",
        metavar="PATH",
        nargs="?",
        type=Path,
        default=Path("."),
        help="Project directory or pipeline file (default: .).",
    )
    add(
        "-j",
        "--job",
        action="append",
        default=[],
        help="Run this job (and what it needs); repeatable.",
    )
    add("--stage", help="Run this stage's jobs (and what they need).")
    add("--branch", help="Branch the pipeline runs for.")
    add("--source", default="push", help="CI_PIPELINE_SOURCE (push, web, schedule...).")
    add("--var", action="append", default=[], help="Extra variable NAME=value; repeatable.")
    add(
        "--secrets-file",
        type=Path,
        help="NAME=value lines, values masked in logs; `protected NAME=value` only reaches "
        "pipelines of the default branch.",
    )
    add("--manual", action="store_true", help="Run manual jobs too.")
    add("--list", dest="list_jobs", action="store_true", help="List the jobs and exit.")
    add("--dry-run", action="store_true", help="Plan and check images; run nothing.")
    add("--jobs", type=_at_least(int, 1), default=4, help="Jobs run at once (default 4).")
    add(
        "--no-cache",
        action="store_true",
        help="Neither restore nor save job caches; build images without the layer cache.",
    )
    add(
        "--in-place",
        action="store_true",
        help="Mount the project directory itself into every job instead of a copy: what jobs "
        "write (artifacts and caches restored too) stays in your tree.",
    )
    add("--memory", help="Memory of each container, e.g. 2g (default KAPAL_JOB_MEMORY).")
    add(
        "--cpus",
        type=_at_least(float, 0.01),
        help="CPUs of each container, e.g. 1.5 (KAPAL_JOB_CPUS).",
    )
    add("--pids", type=_at_least(int, 1), help="Processes per container (default KAPAL_JOB_PIDS).")
    return parser


def run_main(argv: list[str]) -> int:
    """`kapal run ARGV`: run (or list) the pipeline; return the exit code."""
    from pipeline.context import PIPELINE_SOURCES

    parser = run_parser()
    args = parser.parse_args(argv)  # a usage error exits 2
    try:
        if args.source not in PIPELINE_SOURCES:
            raise UsageError(
                f"argument --source: {args.source!r} is not a pipeline source; use one of: "
                + ", ".join(PIPELINE_SOURCES)
            )
        variables = parse_vars(args.var)
    except UsageError as exc:
        parser.error(str(exc))
    from rich.console import Console

    try:
        return _run(
            path=args.path,
            only=frozenset(args.job),
            stage=args.stage,
            branch=args.branch,
            source=args.source,
            variables=variables,
            secrets_file=args.secrets_file,
            manual=args.manual,
            list_jobs=args.list_jobs,
            dry_run=args.dry_run,
            concurrency=args.jobs,
            use_cache=not args.no_cache,
            in_place=args.in_place,
            limits=(args.memory, args.cpus, args.pids),
            console=Console(),
        )
    except PipelineError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except RunnerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


# verb -> its `main(argv) -> exit code`, run by `kapal` without Typer
ARGV_COMMANDS: dict[str, ArgvMain] = {"run": run_main}


def register(app: typer.Typer) -> None:
    """Add `kapal run` to the `kapal` application (as an argv pass-through)."""
    register_argv_command(app, "run", run_main, RUN_HELP)


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
    import pipeline
    from runner.runtime.backend import Limits
    from runner.runtime.quantities import parse_size
    from runner.secrets import load_secrets

    if not path.exists():
        raise WorkspaceError(f"{path}: no such file or directory; pass the project directory")
    if path.is_file():
        pipeline_file, project = path, path.parent
    else:
        project = path
        pipeline_file = pipeline.find_pipeline_file(project)
    memory, cpus, pids = limits
    asked = Limits(
        memory_bytes=parse_size(memory, what="--memory") if memory else None, cpus=cpus, pids=pids
    )
    settings = None
    if not list_jobs:  # a listing reads no settings (pydantic-settings costs tens of ms)
        from runner.settings_env import EnvSettings

        settings = EnvSettings.from_environ()  # RunnerSettings' variables, without pydantic
        settings.container_policy().check_limits(asked)
    secrets = load_secrets(os.environ, secrets_file)
    pipeline_id = next_pipeline_id(settings.data_dir) if settings and not dry_run else 0
    context = trigger_for(
        project,
        branch=branch,
        source=source,
        variables=variables,
        pipeline_id=pipeline_id,
        server_url=os.environ.get("KAPAL_GITLAB_URL", ""),  # CI_SERVER_*
    )
    from runner.remote_includes import default_fetcher  # httpx: on the first remote include

    with default_fetcher() as remote:  # include: remote, cached under the data dir
        the_plan = pipeline.plan(pipeline.load(pipeline_file, root_dir=project), context, remote)
    if not the_plan.created:
        console.print(f"no pipeline: {the_plan.skip_reason}")
        return 0
    for notice in the_plan.warnings:  # what kapal plans around (ignored keywords, ...)
        console.print(str(notice), style="yellow", markup=False, highlight=False, soft_wrap=True)
    if settings is None:
        _list(the_plan, console)
        return 0
    return _execute(
        the_plan,
        context,
        settings,
        project=project,
        asked=asked,
        secrets=secrets,
        options=_Options(only, stage, manual, dry_run, concurrency, use_cache, in_place),
        console=console,
        remote=remote,  # reopened if a child pipeline's files need it
    )


class _Options(NamedTuple):
    """What `kapal run`'s options ask of the engine."""

    only: frozenset[str]
    stage: str | None
    manual: bool
    dry_run: bool
    concurrency: int
    use_cache: bool
    in_place: bool


def _execute(
    the_plan: pipeline.Plan,
    context: pipeline.TriggerContext,
    settings: EnvSettings,
    *,
    project: Path,
    asked: Limits,
    secrets: Mapping[str, Secret],
    options: _Options,
    console: Console,
    remote: HttpFetcher | None = None,
) -> int:
    """Run the planned pipeline (or with --dry-run check its images); return the exit code.

    `remote` fetches the remote files of child pipelines (closed when the run ends)."""
    from runner.artifacts import ArtifactStore
    from runner.cache import CacheStore
    from runner.engine import Engine, EngineOptions
    from runner.engine.downstream import ChildPipelines
    from runner.engine.recorder import PipelineStatus
    from runner.engine.workspace import InPlaceTree, WorkingTreeSource
    from runner.images.resolve import ImageResolver
    from runner.images.store import ImageStore
    from runner.job_images import StoreImageProvider, embedded_builder
    from runner.owners import local_owner
    from runner.secrets import PipelineAccess, secrets_for
    from runner.terminal import LiveRecorder, PlainRecorder

    policy = settings.container_policy()
    pipeline_id = context.pipeline_id
    store = ImageStore(settings.images_dir)
    # a local run belongs to its project; the default branch counts as protected, as in GitLab
    owner, access = local_owner(project), PipelineAccess.of_trigger(context)
    ship = None
    if ships(the_plan):  # only a pipeline that ships (or may, in a child) imports the shipper
        from runner.ship.local import local_shipper

        ship = local_shipper(settings, store, owner, pipeline_id, secrets_for(access, secrets))
    only = options.only
    engine_options = EngineOptions(
        concurrency=options.concurrency,
        manual=options.manual,
        only=only,
        stage=options.stage,
        use_cache=options.use_cache,
        project_dir=context.project_dir,
        secrets=secrets_for(access, secrets),
        limits=policy.limits_for(asked),
        workspace_disk_bytes=policy.disk_bytes,
        ship=ship,
    )
    interactive = sys.stdout.isatty()
    if interactive:
        recorder: LiveRecorder | PlainRecorder = LiveRecorder(console, only)
    else:
        recorder = PlainRecorder(sys.stdout, only)
    artifacts = ArtifactStore(settings.data_dir / "artifacts")
    caches = CacheStore(settings.data_dir / "cache", owner, protected=access.protected)
    resolver = ImageResolver(store, settings)
    if options.dry_run:
        from runner.runtime.fake import FakeBackend

        engine = Engine(
            backend=FakeBackend(),
            images=StoreImageProvider(store, resolver=resolver, owner=owner),
            recorder=recorder,
            work_dir=settings.data_dir / "runs",
            artifacts=artifacts,
            caches=caches,
            options=engine_options,
        )
        selected = engine.selected_jobs(the_plan)
        engine.check_images(the_plan, selected)
        _list(the_plan, console)
        console.print(f"dry run: {len(selected)} job(s) would run; images are in the store")
        return 0
    from runner.runtime.embedded import EmbeddedBackend

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
        options=engine_options,
        # trigger: jobs plan their child pipelines from the same files and trigger
        children=ChildPipelines(context, project, the_plan.pipeline_file, remote=remote),
    )
    artifacts.prune(keep=LOCAL_PIPELINES_KEPT - 1)
    live = recorder if isinstance(recorder, LiveRecorder) else nullcontext()
    with cancel_on_signals(engine, console), live, remote or nullcontext():
        result = engine.run(
            the_plan,
            InPlaceTree(project) if options.in_place else WorkingTreeSource(project),
            pipeline_id=pipeline_id,
        )
    console.print()
    recorder.print_summary(console)
    console.print(f"pipeline #{pipeline_id} {result.status.value} in {_seconds(result)}")
    if result.status == PipelineStatus.CANCELED:
        return EXIT_CANCELED
    return 0 if result.passed else EXIT_FAILED


def _seconds(result: PipelineResult) -> str:
    from runner.runtime.durations import format_duration

    return format_duration(result.duration)
