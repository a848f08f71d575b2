"""The CLI verbs that talk to a kapal server: `repo add|list`, `trigger`, `pipelines`,
`pipeline`, `logs [-f]`, `cancel`, `retry`, `play`, `rollback` (here when no KAPAL_HOST is set).

Where the server is and the token to send: `KAPAL_HOST`, `KAPAL_TOKEN` (see `web.client`).
Exit status: 0 done; 1 the server refused (its message printed); 2 bad usage; 3 no server.
"""

from __future__ import annotations

import json
import secrets
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any

import typer

PROVIDERS = ("github", "gitlab", "gitea")


@contextmanager
def _client(verb: str) -> Iterator[Any]:
    """A client from the settings; any ClientError becomes its one line and exit status."""
    from pydantic import ValidationError

    from web.client import KapalClient
    from web.errors import ClientError
    from web.settings import Settings

    try:
        settings = Settings()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        typer.echo(f"kapal {verb}: bad KAPAL_* setting: {problems}", err=True)
        raise typer.Exit(2) from None
    host = settings.host
    if not host:
        host = (
            f"unix://{settings.bind_socket}"
            if settings.bind_socket is not None
            else f"http://{settings.bind_host}:{settings.bind_port}"
        )
    token = settings.token.get_secret_value() if settings.token is not None else None
    try:
        with KapalClient(host, token) as client:
            yield client
    except ClientError as exc:
        one_line = " ".join(str(exc).split())
        typer.echo(f"kapal {verb}: {one_line}", err=True)
        raise typer.Exit(exc.exit_code) from None


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, sort_keys=True))


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[("" if c is None else str(c)) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    for row in [list(headers), *cells]:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _when(value: str | None) -> str:
    if not value:
        return ""
    return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M:%S")


def _duration(started: str | None, finished: str | None) -> str:
    if not started or not finished:
        return ""
    seconds = (datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds()
    return f"{seconds:.1f}s"


def _repository_id(client: Any, repo: str) -> int:
    from web.errors import ClientError

    if repo.isascii() and repo.isdigit():
        return int(repo)
    found = client.get("/api/v1/repos", name=repo)
    if not found:
        raise ClientError(f"no repository named {repo!r}; see `kapal repo list`")
    return int(found[0]["id"])


def _variables(pairs: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise typer.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint="--var")
        out[name] = value
    return out


def _show_pipeline(detail: dict[str, Any]) -> None:
    typer.echo(
        f"pipeline {detail['id']}  {detail['status']}  {detail['ref']} @ {detail['sha'][:12]}"
        f"  ({detail['source']})"
    )
    if detail.get("reason"):
        typer.echo(f"  {detail['reason']}")
    if detail.get("message"):
        typer.echo(f"  {detail['message'].splitlines()[0][:100]}")
    jobs = detail.get("jobs", [])
    if jobs:
        typer.echo("")
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


def register(app: typer.Typer) -> None:
    """Add the server-talking verbs to `app`."""
    repo = typer.Typer(help="Repositories the server takes webhooks for.", no_args_is_help=True)
    app.add_typer(repo, name="repo")

    @repo.command("add")
    def repo_add(
        name: str = typer.Argument(..., help="owner/name, as the git host names it."),
        clone_url: str = typer.Option(..., "--clone-url", help="Where kapal fetches it from."),
        provider: str = typer.Option("github", "--provider", help="github, gitlab or gitea."),
        secret: str = typer.Option(
            None, "--secret", help="Webhook secret shared with the host (default: a new one)."
        ),
        default_branch: str = typer.Option("main", "--default-branch"),
        as_json: bool = typer.Option(False, "--json", help="Print the answer as JSON."),
    ) -> None:
        """Register a repository; prints its webhook URL (and secret, when made here)."""
        if provider not in PROVIDERS:
            raise typer.BadParameter(f"one of {', '.join(PROVIDERS)}", param_hint="--provider")
        made_secret = secret is None
        secret = secret or secrets.token_urlsafe(24)
        with _client("repo add") as client:
            body = {
                "name": name,
                "clone_url": clone_url,
                "provider": provider,
                "secret": secret,
                "default_branch": default_branch,
            }
            made = client.post("/api/v1/repos", body)
        if as_json:
            _print_json(made | ({"secret": secret} if made_secret else {}))
            return
        typer.echo(f"registered {made['name']} (id {made['id']})")
        typer.echo(f"  webhook URL: {made['webhook_url']}")
        if made_secret:
            typer.echo(f"  webhook secret (shown this once): {secret}")

    @repo.command("list")
    def repo_list(as_json: bool = typer.Option(False, "--json")) -> None:
        """List the registered repositories."""
        with _client("repo list") as client:
            found = client.get("/api/v1/repos")
        if as_json:
            _print_json(found)
            return
        _table(
            ["ID", "NAME", "PROVIDER", "BRANCH", "CLONE URL"],
            [
                [r["id"], r["name"], r["provider"], r["default_branch"], r["clone_url"]]
                for r in found
            ],
        )

    @app.command("trigger")
    def trigger(
        repository: str = typer.Argument(..., metavar="REPO", help="Repository name or id."),
        ref: str = typer.Option(None, "--ref", help="Branch or tag [the default branch]."),
        var: Annotated[
            list[str] | None,
            typer.Option("--var", help="NAME=VALUE for the jobs (repeatable)."),
        ] = None,
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Run the pipeline of a branch or tag's current commit."""
        variables = _variables(var or [])
        with _client("trigger") as client:
            repo_id = _repository_id(client, repository)
            if ref is None:
                ref = client.get(f"/api/v1/repos/{repo_id}")["default_branch"]
            made = client.post(
                f"/api/v1/repos/{repo_id}/pipelines", {"ref": ref, "variables": variables}
            )
        if as_json:
            _print_json(made)
            return
        typer.echo(f"pipeline {made['id']} {made['status']} ({ref} @ {made['sha'][:12]})")

    @app.command("pipelines")
    def pipelines(
        repository: str = typer.Option(None, "--repo", help="Repository name or id."),
        ref: str = typer.Option(None, "--ref"),
        status: str = typer.Option(None, "--status"),
        limit: int = typer.Option(20, "--limit", min=1, max=200),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """List pipelines, newest first."""
        with _client("pipelines") as client:
            page = client.get(
                "/api/v1/pipelines", repo=repository, ref=ref, status=status, limit=limit
            )
        if as_json:
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

    @app.command("pipeline")
    def pipeline(
        pipeline_id: int = typer.Argument(..., metavar="ID"),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Show a pipeline and its jobs."""
        with _client("pipeline") as client:
            detail = client.get(f"/api/v1/pipelines/{pipeline_id}")
        if as_json:
            _print_json(detail)
            return
        _show_pipeline(detail)

    @app.command("logs")
    def logs(
        job_id: int = typer.Argument(..., metavar="JOB"),
        follow: bool = typer.Option(False, "--follow", "-f", help="Follow until the job ends."),
        offset: int = typer.Option(0, "--offset", min=0, help="First line to show (0-based)."),
    ) -> None:
        """Print a job's log (with -f, follow it live until the job ends)."""
        with _client("logs") as client:
            if not follow:
                for piece in client.log_text(job_id, offset):
                    sys.stdout.write(piece)
                sys.stdout.flush()
                return
            for event in client.follow_log(job_id, offset):
                if event.end:
                    sys.stdout.flush()
                    code = "" if event.exit_code is None else f", exit code {event.exit_code}"
                    typer.echo(f"job {job_id} {event.status}{code}", err=True)
                    return
                sys.stdout.write(event.text + "\n")
                sys.stdout.flush()

    def act(verb: str, target: int, job: bool, params: dict[str, Any] | None = None) -> None:
        path = f"/api/v1/jobs/{target}/{verb}" if job else f"/api/v1/pipelines/{target}/{verb}"
        with _client(verb) as client:
            answer = client.post(path, None, **(params or {}))
        if "jobs" in answer:
            _show_pipeline(answer)
        else:
            typer.echo(f"job {answer['id']} ({answer['name']}) {answer['status']}")

    @app.command("cancel")
    def cancel(
        target: int = typer.Argument(..., metavar="ID", help="Pipeline id (a job's with --job)."),
        job: bool = typer.Option(False, "--job", help="ID is a job's."),
    ) -> None:
        """Cancel a pipeline (or with --job one job)."""
        act("cancel", target, job)

    @app.command("retry")
    def retry(
        target: int = typer.Argument(..., metavar="ID", help="Pipeline id (a job's with --job)."),
        job: bool = typer.Option(False, "--job", help="ID is a job's."),
        every: bool = typer.Option(False, "--all", help="Retry every job, not only failed ones."),
    ) -> None:
        """Retry a pipeline's failed jobs (every job with --all; one job with --job)."""
        act("retry", target, job, None if job or not every else {"all": "true"})

    @app.command("play")
    def play(job_id: int = typer.Argument(..., metavar="JOB")) -> None:
        """Start a manual job."""
        act("play", job_id, True)

    @app.command("rollback")
    def rollback(
        environment: str = typer.Argument(..., metavar="ENV"),
        to: int = typer.Option(None, "--to", min=1, help="The deployment to go back to (its id)."),
        repository: str = typer.Option(None, "--repo", help="Repository name or id (server)."),
    ) -> None:
        """Re-deploy an earlier deployment's exact digest (by default the one before)."""
        # on the server KAPAL_HOST names; without one, the deployments `kapal run` recorded here
        import os

        if not os.environ.get("KAPAL_HOST"):
            from runner.ship.cli import rollback_here

            rollback_here(environment, to)
            return
        from web.errors import ClientError

        with _client("rollback") as client:
            repo = None if repository is None else _repository_id(client, repository)
            found = [
                e for e in client.get("/api/v1/environments", repo=repo) if e["name"] == environment
            ]
            if not found:
                raise ClientError(f"no environment named {environment!r}; see `kapal deployments`")
            if len(found) > 1:
                raise ClientError(
                    f"{len(found)} repositories have an environment {environment!r}: "
                    "name one with --repo"
                )
            done = client.post(
                f"/api/v1/environments/{found[0]['id']}/rollback", {} if to is None else {"to": to}
            )
        typer.echo(
            f"{environment}: deployment {done['id']} rolls back to {done.get('rollback_of')}"
        )
