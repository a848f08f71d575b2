"""The CLI verbs that talk to a kapal server: `repo add|list`, `trigger`, `pipelines`,
`pipeline`, `logs [-f]`, `cancel`, `retry`, `play`, `rollback` (here when no KAPAL_HOST is set).

Each verb parses its own argv (argparse) and `kapal` runs it straight from the command line
(`ARGV_COMMANDS`, see web/cli.py), without Typer: a person runs these all day against a server
that answers in milliseconds, and Typer (a pydantic adapter per option, rich for `--help`) cost
more than the request. `register` adds the very same mains to the Typer application, so
`web.cli.build_app()` (the tests' entry) runs this code too.

Where the server is and the token to send: `KAPAL_HOST`, `KAPAL_TOKEN` (see `web.client`), as
`web.settings.Settings` reads them. When no other setting of that class is in the environment,
`plain_server_settings` reads the two the way pydantic-settings does, without importing it
(pydantic-settings and the settings module cost more than the HTTP client); otherwise `Settings`
itself is loaded, so a bad `KAPAL_*` value is reported as it always was. `--help` and a usage
error import neither the settings nor httpx; a call imports httpx (`web.client`).

Exit status: 0 done; 1 the server refused (its message printed); 2 bad usage or a bad
`KAPAL_*` setting; 3 no server; 130 interrupted (Ctrl-C while following a log).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from runner.argv_commands import ArgvMain, register_argv_command
from runner.terminal_text import aligned, printable

if TYPE_CHECKING:
    import argparse

    import typer

    from web.client import KapalClient
    from web.settings import Settings

PROVIDERS = ("github", "gitlab", "gitea")

# verb -> its one-line summary (web/cli.py's COMMAND_SUMMARIES shows the same; a test compares)
SUMMARIES: dict[str, str] = {
    "repo": "Repositories the server takes webhooks for.",
    "trigger": "Run the pipeline of a branch or tag's current commit.",
    "pipelines": "List pipelines, newest first.",
    "pipeline": "Show a pipeline and its jobs.",
    "logs": "Print a job's log (with -f, follow it live until the job ends).",
    "cancel": "Cancel a pipeline (or with --job one job).",
    "retry": "Retry a pipeline's failed jobs (every job with --all; one job with --job).",
    "play": "Start a manual job.",
    "rollback": "Re-deploy an earlier deployment's exact digest (by default the one before).",
    "deployments": "List environments with their current deployment, or one environment's history.",
}

SERVER_EPILOG = (
    "The server is KAPAL_HOST (unix:///path/kapal.sock or http://host:port; unset: the local "
    "`kapal serve`'s address) and KAPAL_TOKEN the API token sent. Exit status: 0 done, 1 the "
    "server refused, 2 bad usage or setting, 3 no server."
)
ROLLBACK_EPILOG = (
    "With KAPAL_HOST set, the environment on that server (KAPAL_TOKEN: an API token); without "
    "it, the deployments `kapal run` recorded on this machine (KAPAL_DATA_DIR)."
)
# the verbs that act on this machine's records when KAPAL_HOST is unset
LOCAL_TOO = frozenset({"rollback", "deployments"})

# What `Settings` takes when KAPAL_BIND_* are unset (tests/web/api/test_client_cli.py compares).
DEFAULT_BIND_HOST = "127.0.0.1"
DEFAULT_BIND_PORT = 8080
# The `KAPAL_*` variables (lower case) whose every value `Settings` takes as it is: the two the
# verbs read, and the data dir (any path). Job secrets (`KAPAL_SECRET_*`) are no setting.
PLAIN_VARIABLES = frozenset({"kapal_host", "kapal_token", "kapal_data_dir"})
JOB_SECRET_PREFIX = "kapal_secret_"


# -- where the server is ----------------------------------------------------------------------


def server_address(
    host: str, token: str | None, *, bind_socket: str | None, bind_host: str, bind_port: int
) -> tuple[str, str | None]:
    """KAPAL_HOST (else the local server's socket or bind address) and the token to send."""
    if not host:
        host = (
            f"unix://{bind_socket}"
            if bind_socket is not None
            else f"http://{bind_host}:{bind_port}"
        )
    return host, token


def plain_server_settings(environ: Mapping[str, str]) -> tuple[str, str | None] | None:
    """The server address and token as `Settings` would give them, read without pydantic.

    None when the environment holds any other `KAPAL_*` setting (or one variable twice in
    different case): only `Settings` can say whether those are valid, and which one wins.
    """
    found: dict[str, str] = {}
    for key, value in environ.items():
        name = key.lower()
        if not name.startswith("kapal_") or name.startswith(JOB_SECRET_PREFIX):
            continue
        if name not in PLAIN_VARIABLES or name in found:
            return None
        found[name] = value
    return server_address(
        found.get("kapal_host", ""),
        found.get("kapal_token"),
        bind_socket=None,
        bind_host=DEFAULT_BIND_HOST,
        bind_port=DEFAULT_BIND_PORT,
    )


def settings_server_address(settings: Settings) -> tuple[str, str | None]:
    """The server address and token `settings` give."""
    return server_address(
        settings.host,
        settings.token.get_secret_value() if settings.token is not None else None,
        bind_socket=None if settings.bind_socket is None else str(settings.bind_socket),
        bind_host=settings.bind_host,
        bind_port=settings.bind_port,
    )


def _server(verb: str) -> tuple[str, str | None] | int:
    """Where to send `verb`'s requests, or exit status 2 after saying which setting is bad."""
    plain = plain_server_settings(os.environ)
    if plain is not None:
        return plain
    from pydantic import ValidationError

    from web.settings import Settings

    try:
        settings = Settings()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        print(f"kapal {verb}: bad KAPAL_* setting: {problems}", file=sys.stderr)
        return 2
    return settings_server_address(settings)


def _talk(verb: str, work: Callable[[KapalClient], None]) -> int:
    """Run `work` with a client of the server; a ClientError becomes one line and its status."""
    address = _server(verb)
    if isinstance(address, int):
        return address
    from web.errors import ClientError

    try:
        with _client_class()(*address) as client:
            work(client)
    except ClientError as exc:
        one_line = " ".join(str(exc).split())
        print(f"kapal {verb}: {printable(one_line)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stdout.flush()
        print(f"kapal {verb}: interrupted", file=sys.stderr)
        return 130
    return 0


def _client_class() -> type[KapalClient]:
    """`web.client.KapalClient`, its httpx imported without httpx's own command-line tool.

    The httpx package imports `httpx._main` (click, rich and pygments: a third of its import
    time) only to offer `httpx.main`, and defines a stub in its place when that import fails;
    kapal never calls it. The block lasts the import only: a later `import httpx._main` works.
    """
    block = "httpx" not in sys.modules and "httpx._main" not in sys.modules
    if block:
        sys.modules["httpx._main"] = None  # type: ignore[assignment]  # "not importable"
    try:
        from web.client import KapalClient
    finally:
        if block:
            sys.modules.pop("httpx._main", None)
    return KapalClient


# -- output -----------------------------------------------------------------------------------


def _print_json(value: Any) -> None:
    import json

    print(json.dumps(value, indent=2, sort_keys=True))


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Columns two spaces apart; every cell printed safe (names, refs, messages and reasons come
    from pipelines and commits: runner.terminal_text)."""
    cells = [["" if c is None else c for c in row] for row in rows]
    for row in aligned([headers, *cells]):
        print("  ".join(text + pad for text, pad in row).rstrip())


def _when(value: str | None) -> str:
    if not value:
        return ""
    from datetime import datetime

    return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M:%S")


def _duration(started: str | None, finished: str | None) -> str:
    if not started or not finished:
        return ""
    from datetime import datetime

    seconds = (datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds()
    return f"{seconds:.1f}s"


def _show_pipeline(detail: dict[str, Any]) -> None:
    print(
        f"pipeline {detail['id']}  {detail['status']}  {printable(detail['ref'])} @ "
        f"{detail['sha'][:12]}  ({detail['source']})"
    )
    if detail.get("reason"):
        print(f"  {printable(detail['reason'])}")
    if detail.get("message"):
        print(f"  {printable(detail['message'].splitlines()[0][:100])}")
    jobs = detail.get("jobs", [])
    if jobs:
        print("")
        _table(
            ["JOB", "NAME", "STAGE", "STATUS", "EXIT", "TIME", "WORKER", "REASON"],
            [
                [
                    j["id"],
                    j["name"] + (f" (#{j['attempt']})" if j["attempt"] > 1 else ""),
                    j["stage"],
                    j["status"] + (" (retried)" if j["retried"] else ""),
                    j["exit_code"],
                    _duration(j["started_at"], j["finished_at"]),
                    j["worker"],
                    (j["reason"] or "").splitlines()[0][:60] if j["reason"] else "",
                ]
                for j in jobs
            ],
        )


# -- arguments --------------------------------------------------------------------------------


def _parser(verb: str) -> argparse.ArgumentParser:
    """An argparse parser for `kapal VERB`, its help starting with the verb's summary."""
    import argparse

    return argparse.ArgumentParser(
        prog=f"kapal {verb}",
        description=SUMMARIES[verb],
        epilog=ROLLBACK_EPILOG if verb in LOCAL_TOO else SERVER_EPILOG,
        allow_abbrev=False,
    )


def _whole_number(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number from `low` (up to `high`)."""

    def parse(text: str) -> int:
        import argparse

        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low or (high is not None and value > high):
            span = f"from {low} to {high}" if high is not None else f"{low} or more"
            raise argparse.ArgumentTypeError(f"{value} is out of range: use {span}")
        return value

    parse.__name__ = "number"
    return parse


def _json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", dest="as_json", action="store_true", help="Print the answer as JSON."
    )


def _target_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="ID", type=int, help="Pipeline id (a job's with --job).")
    parser.add_argument("--job", action="store_true", help="ID is a job's.")


def repo_parser() -> argparse.ArgumentParser:
    """`kapal repo`'s arguments: the sub-commands `add` and `list`."""
    parser = _parser("repo")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, summary: str) -> argparse.ArgumentParser:
        made = commands.add_parser(
            name, help=summary, description=summary, epilog=SERVER_EPILOG, allow_abbrev=False
        )
        _json_flag(made)
        return made

    add = command(
        "add", "Register a repository; prints its webhook URL (and secret, when made here)."
    )
    add.add_argument("name", metavar="NAME", help="owner/name, as the git host names it.")
    add.add_argument(
        "--clone-url", metavar="URL", required=True, help="Where kapal fetches it from."
    )
    add.add_argument(
        "--provider", default="github", choices=PROVIDERS, help="github, gitlab or gitea."
    )
    add.add_argument(
        "--secret", help="Webhook secret shared with the host (default: a new one, shown once)."
    )
    add.add_argument(
        "--default-branch", metavar="BRANCH", default="main", help="Its default branch [main]."
    )
    command("list", "List the registered repositories.")
    return parser


def trigger_parser() -> argparse.ArgumentParser:
    """`kapal trigger`'s arguments."""
    parser = _parser("trigger")
    parser.add_argument("repository", metavar="REPO", help="Repository name or id.")
    parser.add_argument("--ref", help="Branch or tag [the default branch].")
    parser.add_argument(
        "--var",
        metavar="NAME=VALUE",
        action="append",
        default=[],
        help="NAME=VALUE for the jobs (repeatable).",
    )
    _json_flag(parser)
    return parser


def pipelines_parser() -> argparse.ArgumentParser:
    """`kapal pipelines`' arguments."""
    parser = _parser("pipelines")
    parser.add_argument("--repo", dest="repository", metavar="REPO", help="Repository name or id.")
    parser.add_argument("--ref", help="Only pipelines of this branch or tag.")
    parser.add_argument("--status", help="Only pipelines with this status.")
    parser.add_argument(
        "--limit",
        metavar="N",
        type=_whole_number(1, 200),
        default=20,
        help="How many, 1 to 200 [20].",
    )
    _json_flag(parser)
    return parser


def pipeline_parser() -> argparse.ArgumentParser:
    """`kapal pipeline`'s arguments."""
    parser = _parser("pipeline")
    parser.add_argument("pipeline_id", metavar="ID", type=int, help="The pipeline's id.")
    _json_flag(parser)
    return parser


def logs_parser() -> argparse.ArgumentParser:
    """`kapal logs`' arguments."""
    parser = _parser("logs")
    parser.add_argument("job_id", metavar="JOB", type=int, help="The job's id.")
    parser.add_argument("-f", "--follow", action="store_true", help="Follow until the job ends.")
    parser.add_argument(
        "--offset",
        metavar="N",
        type=_whole_number(0),
        default=0,
        help="First line to show (0-based).",
    )
    return parser


def cancel_parser() -> argparse.ArgumentParser:
    """`kapal cancel`'s arguments."""
    parser = _parser("cancel")
    _target_args(parser)
    return parser


def retry_parser() -> argparse.ArgumentParser:
    """`kapal retry`'s arguments."""
    parser = _parser("retry")
    _target_args(parser)
    parser.add_argument(
        "--all", dest="every", action="store_true", help="Retry every job, not only failed ones."
    )
    return parser


def play_parser() -> argparse.ArgumentParser:
    """`kapal play`'s arguments."""
    parser = _parser("play")
    parser.add_argument("job_id", metavar="JOB", type=int, help="The manual job's id.")
    return parser


def _repo_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--repo", dest="repository", metavar="REPO", help="Repository name or id (server)."
    )


def rollback_parser() -> argparse.ArgumentParser:
    """`kapal rollback`'s arguments."""
    parser = _parser("rollback")
    parser.add_argument("environment", metavar="ENV", help="The environment's name.")
    parser.add_argument(
        "--to", metavar="ID", type=_whole_number(1), help="The deployment to go back to (its id)."
    )
    _repo_flag(parser)
    return parser


def deployments_parser() -> argparse.ArgumentParser:
    """`kapal deployments`'s arguments on a server (without one: runner.ship.cli's)."""
    parser = _parser("deployments")
    parser.add_argument("environment", metavar="ENV", nargs="?", help="Show this one's history.")
    _repo_flag(parser)
    _json_flag(parser)
    return parser


# -- the verbs --------------------------------------------------------------------------------


def _repository_id(client: KapalClient, repo: str) -> int:
    from web.errors import ClientError

    if repo.isascii() and repo.isdigit():
        return int(repo)
    found = client.get("/api/v1/repos", name=repo)
    if not found:
        raise ClientError(f"no repository named {repo!r}; see `kapal repo list`")
    return int(found[0]["id"])


def repo_main(argv: list[str]) -> int:
    """`kapal repo add|list ARGV`: register or list repositories; the exit status."""
    parser = repo_parser()
    if not argv:  # as ever: a bare `kapal repo` shows its help, as a usage error
        parser.print_help()
        return 2
    args = parser.parse_args(argv)
    if args.command == "list":
        return _talk("repo list", lambda client: _repo_list(client, args.as_json))
    made_secret = not args.secret  # an empty --secret, too, gets one made (and shown)
    if made_secret:
        import secrets

        args.secret = secrets.token_urlsafe(24)
    return _talk("repo add", lambda client: _repo_add(client, args, made_secret))


def _environment_named(client: KapalClient, name: str, repository: str | None) -> dict[str, Any]:
    """The environment called `name` on the server, within `repository` when given;
    ClientError when none or several repositories have one of that name."""
    from web.errors import ClientError

    repo = None if repository is None else _repository_id(client, repository)
    environments = client.get("/api/v1/environments", repo=repo)
    found = [e for e in environments if e["name"] == name]
    if not found:
        raise ClientError(f"no environment named {name!r} on this server; see `kapal deployments`")
    if len(found) > 1:
        raise ClientError(
            f"{len(found)} repositories have an environment {name!r}: name one with --repo"
        )
    return dict(found[0])


def _repo_add(client: KapalClient, args: argparse.Namespace, made_secret: bool) -> None:
    body = {
        "name": args.name,
        "clone_url": args.clone_url,
        "provider": args.provider,
        "secret": args.secret,
        "default_branch": args.default_branch,
    }
    made = client.post("/api/v1/repos", body)
    if args.as_json:
        _print_json(made | ({"secret": args.secret} if made_secret else {}))
        return
    print(f"registered {made['name']} (id {made['id']})")
    print(f"  webhook URL: {made['webhook_url']}")
    if made_secret:
        print(f"  webhook secret (shown this once): {args.secret}")


def _repo_list(client: KapalClient, as_json: bool) -> None:
    found = client.get("/api/v1/repos")
    if as_json:
        _print_json(found)
        return
    _table(
        ["ID", "NAME", "PROVIDER", "BRANCH", "CLONE URL"],
        [[r["id"], r["name"], r["provider"], r["default_branch"], r["clone_url"]] for r in found],
    )


def trigger_main(argv: list[str]) -> int:
    """`kapal trigger ARGV`: run a ref's pipeline; the exit status."""
    parser = trigger_parser()
    args = parser.parse_args(argv)
    variables: dict[str, str] = {}
    for pair in args.var:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            parser.error(f"--var {pair!r} is not NAME=VALUE")
        variables[name] = value

    def work(client: KapalClient) -> None:
        repo_id = _repository_id(client, args.repository)
        ref = args.ref
        if ref is None:
            ref = client.get(f"/api/v1/repos/{repo_id}")["default_branch"]
        made = client.post(
            f"/api/v1/repos/{repo_id}/pipelines", {"ref": ref, "variables": variables}
        )
        if args.as_json:
            _print_json(made)
            return
        print(f"pipeline {made['id']} {made['status']} ({ref} @ {made['sha'][:12]})")

    return _talk("trigger", work)


def pipelines_main(argv: list[str]) -> int:
    """`kapal pipelines ARGV`: list pipelines, newest first; the exit status."""
    args = pipelines_parser().parse_args(argv)

    def work(client: KapalClient) -> None:
        page = client.get(
            "/api/v1/pipelines",
            repo=args.repository,
            ref=args.ref,
            status=args.status,
            limit=args.limit,
        )
        if args.as_json:
            _print_json(page)
            return
        _table(
            ["ID", "STATUS", "REF", "SHA", "SOURCE", "CREATED", "TIME"],
            [
                [
                    p["id"],
                    p["status"],
                    p["ref"],
                    p["sha"][:12],
                    p["source"],
                    _when(p["created_at"]),
                    _duration(p["started_at"], p["finished_at"]),
                ]
                for p in page["items"]
            ],
        )

    return _talk("pipelines", work)


def pipeline_main(argv: list[str]) -> int:
    """`kapal pipeline ARGV`: show a pipeline and its jobs; the exit status."""
    args = pipeline_parser().parse_args(argv)

    def work(client: KapalClient) -> None:
        detail = client.get(f"/api/v1/pipelines/{args.pipeline_id}")
        if args.as_json:
            _print_json(detail)
            return
        _show_pipeline(detail)

    return _talk("pipeline", work)


def logs_main(argv: list[str]) -> int:
    """`kapal logs ARGV`: print (or with -f follow) a job's log; the exit status."""
    args = logs_parser().parse_args(argv)

    def work(client: KapalClient) -> None:
        if not args.follow:
            for piece in client.log_text(args.job_id, args.offset):
                sys.stdout.write(piece)
            sys.stdout.flush()
            return
        for event in client.follow_log(args.job_id, args.offset):
            if event.end:
                sys.stdout.flush()
                code = "" if event.exit_code is None else f", exit code {event.exit_code}"
                print(f"job {args.job_id} {event.status}{code}", file=sys.stderr)
                return
            sys.stdout.write(event.text + "\n")
            sys.stdout.flush()

    return _talk("logs", work)


def _act(verb: str, target: int, job: bool, params: dict[str, Any] | None = None) -> int:
    """POST `verb` to a pipeline (or a job) and show what it became; the exit status."""
    path = f"/api/v1/jobs/{target}/{verb}" if job else f"/api/v1/pipelines/{target}/{verb}"

    def work(client: KapalClient) -> None:
        answer = client.post(path, None, **(params or {}))
        if "jobs" in answer:
            _show_pipeline(answer)
        else:
            print(f"job {answer['id']} ({printable(answer['name'])}) {answer['status']}")

    return _talk(verb, work)


def cancel_main(argv: list[str]) -> int:
    """`kapal cancel ARGV`: cancel a pipeline or a job; the exit status."""
    args = cancel_parser().parse_args(argv)
    return _act("cancel", args.target, args.job)


def retry_main(argv: list[str]) -> int:
    """`kapal retry ARGV`: retry a pipeline's failed (or all) jobs, or one job; the exit status."""
    args = retry_parser().parse_args(argv)
    return _act(
        "retry", args.target, args.job, None if args.job or not args.every else {"all": "true"}
    )


def play_main(argv: list[str]) -> int:
    """`kapal play ARGV`: start a manual job; the exit status."""
    args = play_parser().parse_args(argv)
    return _act("play", args.job_id, True)


def rollback_main(argv: list[str]) -> int:
    """`kapal rollback ARGV`: on the server KAPAL_HOST names, else here; the exit status."""
    args = rollback_parser().parse_args(argv)
    if not os.environ.get("KAPAL_HOST"):
        from runner.ship.cli import rollback_here

        return rollback_here(args.environment, args.to)

    def work(client: KapalClient) -> None:
        environment = _environment_named(client, args.environment, args.repository)
        done = client.post(
            f"/api/v1/environments/{environment['id']}/rollback",
            {} if args.to is None else {"to": args.to},
        )
        print(
            f"{printable(args.environment)}: deployment {done['id']} rolls back to "
            f"{done.get('rollback_of')}"
        )

    return _talk("rollback", work)


def deployments_main(argv: list[str]) -> int:
    """`kapal deployments ARGV`: the environments (or ENV's history) of the server KAPAL_HOST
    names, else those `kapal run` recorded on this machine; the exit status."""
    if not os.environ.get("KAPAL_HOST"):
        from runner.ship.cli import deployments_main as here

        return here(argv)
    args = deployments_parser().parse_args(argv)

    def work(client: KapalClient) -> None:
        if args.environment is None:
            repo = None if args.repository is None else _repository_id(client, args.repository)
            environments = client.get("/api/v1/environments", repo=repo)
            if args.as_json:
                _print_json(environments)
                return
            _table(
                ["ENVIRONMENT", "REPO", "DEPLOYMENT", "KIND", "DIGEST", "TARGET", "WHEN"],
                [_environment_row(e) for e in environments],
            )
            return
        environment = _environment_named(client, args.environment, args.repository)
        history = client.get(f"/api/v1/environments/{environment['id']}/deployments")
        if args.as_json:
            _print_json(history)
            return
        _table(
            ["ID", "STATUS", "DIGEST", "TARGET", "WHEN", "WHO", "PIPELINE", "NOTE"],
            [_deployment_row(d) for d in reversed(history)],  # oldest first, as on this machine
        )

    return _talk("deployments", work)


def _environment_row(environment: dict[str, Any]) -> list[Any]:
    now = environment.get("current")
    if not now:
        return [environment["name"], environment["repository_id"], "-", "-", "-", "-", "-"]
    return [
        environment["name"],
        environment["repository_id"],
        now["id"],
        now["kind"],
        now["digest"],
        now["target"],
        _when(now["created_at"]),
    ]


def _deployment_row(deployment: dict[str, Any]) -> list[Any]:
    note = (
        f"rollback to {deployment['rollback_of']}"
        if deployment.get("rollback_of")
        else deployment.get("message") or ""
    )
    who = deployment.get("approved_by") or deployment.get("user") or ""
    pipeline = f"#{deployment['pipeline_id']}" if deployment.get("pipeline_id") else ""
    return [
        deployment["id"],
        deployment["status"],
        deployment["digest"],
        deployment["target"],
        _when(deployment["created_at"]),
        who,
        pipeline,
        note.splitlines()[0][:80] if note else "",
    ]


# verb -> its `main(argv) -> exit code`, run by `kapal` without Typer
ARGV_COMMANDS: dict[str, ArgvMain] = {
    "repo": repo_main,
    "trigger": trigger_main,
    "pipelines": pipelines_main,
    "pipeline": pipeline_main,
    "logs": logs_main,
    "cancel": cancel_main,
    "retry": retry_main,
    "play": play_main,
    "rollback": rollback_main,
    "deployments": deployments_main,
}


def register(app: typer.Typer) -> None:
    """Add the server-talking verbs to `app` (as argv pass-throughs)."""
    for verb, main in ARGV_COMMANDS.items():
        register_argv_command(app, verb, main, SUMMARIES[verb])
