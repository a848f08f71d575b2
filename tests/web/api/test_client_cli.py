"""The CLI verbs that talk to a server, against a real uvicorn over its Unix socket and TCP:
what they print, their exit status, and one-line errors (never a traceback)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tests.test_startup import heavy_in, imported_by
from tests.web.api.conftest import ADMIN, LiveServer, RecordingDispatcher, add_pipeline, register
from tests.web.test_mirrors import Project
from web.cli import COMMAND_SUMMARIES, build_app
from web.client_cli import (
    JOB_SECRET_PREFIX,
    PLAIN_VARIABLES,
    SUMMARIES,
    plain_server_settings,
    settings_server_address,
)
from web.db.jobs import set_job_status
from web.db.logs import append_log
from web.db.repos import get_repository_credentials
from web.orchestration import Services

PIPELINE = """
image: busybox:latest
build:
  script: [echo build]
ship:
  script: [echo ship]
  when: manual
"""


def kapal(
    server: LiveServer | str, *args: str, token: str | None = ADMIN, tmp: Path
) -> tuple[int, str, str]:
    host = server if isinstance(server, str) else server.unix
    env = {"KAPAL_HOST": host, "KAPAL_DATA_DIR": str(tmp / "cli-data")}
    env["KAPAL_TOKEN"] = token or ""
    result = CliRunner().invoke(build_app(), list(args), env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def test_repo_add_trigger_list_show_play(
    live_server: LiveServer,
    services: Services,
    project: Project,
    dispatcher: RecordingDispatcher,
    tmp_path: Path,
) -> None:
    sha = project.commit({".kapal.yml": PIPELINE})
    project.push()
    code, out, err = kapal(
        live_server, "repo", "add", "acme/shop", "--clone-url", str(project.origin), tmp=tmp_path
    )
    assert code == 0, err
    assert "registered acme/shop (id 1)" in out
    assert "webhook URL: http://kapal.test/hooks/github" in out
    secret = out.split("webhook secret (shown this once): ")[1].split()[0]
    with services.database.transaction() as session:
        stored = get_repository_credentials(
            session=session, cipher=services.cipher(), repository_id=1
        )
    assert stored.webhook_secret == secret
    code, out, _ = kapal(live_server, "repo", "list", tmp=tmp_path)
    assert code == 0 and "acme/shop" in out
    code, out, err = kapal(live_server, "trigger", "acme/shop", "--ref", "main", tmp=tmp_path)
    assert code == 0, err
    assert out.startswith("pipeline 1 ")
    assert sha[:12] in out
    code, out, _ = kapal(live_server, "pipelines", "--repo", "acme/shop", tmp=tmp_path)
    assert code == 0
    assert out.splitlines()[0].split() == [
        "ID",
        "STATUS",
        "REF",
        "SHA",
        "SOURCE",
        "CREATED",
        "TIME",
    ]
    assert out.splitlines()[1].split()[:5] == ["1", "running", "main", sha[:12], "api"]
    code, out, _ = kapal(live_server, "pipeline", "1", tmp=tmp_path)
    assert code == 0
    rows = {line.split()[1]: line.split() for line in out.splitlines()[2:] if line.strip()}
    assert rows["build"][3] == "pending"
    assert rows["ship"][3] == "manual"
    ship = int(rows["ship"][0])
    code, out, _ = kapal(live_server, "play", str(ship), tmp=tmp_path)
    assert code == 0
    assert out.strip() == f"job {ship} (ship) pending"
    assert dispatcher.sent[-1] == ship
    code, _, err = kapal(live_server, "play", str(ship), tmp=tmp_path)
    assert code == 1
    assert err.startswith("kapal play: job 'ship' is pending")
    assert len(err.strip().splitlines()) == 1


def test_logs_cancel_retry(live_server: LiveServer, services: Services, tmp_path: Path) -> None:
    repo = register(services)
    pipeline_id, (job_id, other) = add_pipeline(
        services, repo.id, jobs={"a": "running", "b": "created"}
    )
    with services.database.transaction() as session:
        append_log(session=session, job_id=job_id, lines=["hello", "world"])
    code, out, _ = kapal(live_server, "logs", str(job_id), tmp=tmp_path)
    assert (code, out) == (0, "hello\nworld\n")
    code, out, _ = kapal(live_server, "logs", str(job_id), "--offset", "1", tmp=tmp_path)
    assert out == "world\n"
    with services.database.transaction() as session:
        set_job_status(session=session, job_id=job_id, status="failed", exit_code=1)
    code, out, err = kapal(live_server, "logs", "-f", str(job_id), tmp=tmp_path)
    assert code == 0
    assert out == "hello\nworld\n"
    assert err.strip() == f"job {job_id} failed, exit code 1"
    code, out, _ = kapal(live_server, "cancel", str(pipeline_id), tmp=tmp_path)
    assert code == 0
    assert out.startswith(f"pipeline {pipeline_id} ")
    assert any(
        line.split()[:4] == [str(other), "b", "test", "canceled"] for line in out.splitlines()
    )
    code, out, _ = kapal(live_server, "retry", "--job", str(job_id), tmp=tmp_path)
    assert code == 0
    again = int(out.split()[1])
    assert out.strip() in (f"job {again} (a) created", f"job {again} (a) pending")
    code, out, _ = kapal(live_server, "cancel", "--job", str(again), tmp=tmp_path)
    assert (code, out.strip()) == (0, f"job {again} (a) canceled")
    code, _, err = kapal(live_server, "retry", str(pipeline_id), "--all", tmp=tmp_path)
    assert code == 1  # recorded without a plan: nothing the server can run again
    assert err.startswith("kapal retry: pipeline") and "no plan" in err


def test_errors_are_one_line_with_fitting_exit_codes(
    live_server: LiveServer, services: Services, tmp_path: Path
) -> None:
    code, _, err = kapal(live_server, "pipeline", "42", tmp=tmp_path)
    assert code == 1
    assert err == "kapal pipeline: pipeline 42 does not exist\n"
    code, _, err = kapal(live_server, "cancel", "42", token=None, tmp=tmp_path)
    assert code == 1
    assert "needs an API token" in err and len(err.splitlines()) == 1
    code, _, err = kapal(live_server, "trigger", "nobody/none", tmp=tmp_path)
    assert code == 1
    assert "no repository named 'nobody/none'" in err
    code, _, err = kapal(f"unix://{tmp_path}/none.sock", "pipelines", tmp=tmp_path)
    assert code == 3
    assert err.startswith(
        f"kapal pipelines: cannot reach the kapal server at unix://{tmp_path}/none.sock"
    )
    assert len(err.splitlines()) == 1
    code, _, err = kapal("http://127.0.0.1:9", "pipelines", tmp=tmp_path)
    assert code == 3
    code, _, err = kapal("ftp://x", "pipelines", tmp=tmp_path)
    assert code == 1
    assert "KAPAL_HOST 'ftp://x'" in err
    code, _, err = kapal(live_server, "trigger", "acme/shop", "--var", "NOEQUALS", tmp=tmp_path)
    assert code == 2
    assert err.startswith("usage: kapal trigger ")
    assert err.endswith("kapal trigger: error: --var 'NOEQUALS' is not NAME=VALUE\n")


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_both_transports(
    live_server: LiveServer, services: Services, tmp_path: Path, transport: str
) -> None:
    register(services)
    host = live_server.unix if transport == "unix" else live_server.url
    code, out, _ = kapal(host, "repo", "list", "--json", tmp=tmp_path)
    assert code == 0
    assert '"name": "acme/shop"' in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["pipelines", "--limit", "0"], "argument --limit: 0 is out of range: use from 1 to 200"),
        (["pipelines", "--limit", "ten"], "argument --limit: 'ten' is not a whole number"),
        (["logs", "7", "--offset", "-1"], "argument --offset: -1 is out of range: use 0 or more"),
        (["pipeline"], "the following arguments are required: ID"),
        (["play", "x"], "argument JOB: invalid int value: 'x'"),
        (["rollback", "prod", "--to", "0"], "argument --to: 0 is out of range: use 1 or more"),
        (
            ["repo", "add", "a/b", "--clone-url", "u", "--provider", "svn"],
            "argument --provider: invalid choice: 'svn'",
        ),
        (["repo", "add", "a/b"], "the following arguments are required: --clone-url"),
        (["repo", "remove"], "argument COMMAND: invalid choice: 'remove'"),
        (["retry", "1", "--every"], "unrecognized arguments: --every"),
        (["cancel", "1", "--jo"], "unrecognized arguments: --jo"),  # no abbreviations (as click)
    ],
)
def test_usage_errors_say_what_and_exit_2_before_any_request(
    args: list[str], message: str, tmp_path: Path
) -> None:
    # KAPAL_HOST names nothing: a usage error is found before the server is asked
    code, out, err = kapal(f"unix://{tmp_path}/none.sock", *args, tmp=tmp_path)
    assert (code, out) == (2, "")
    verb = " ".join(args[:2]) if args[0] == "repo" and args[1] == "add" else args[0]
    assert err.startswith(f"usage: kapal {verb} ")
    assert f"kapal {verb}: error: {message}" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("verb", sorted(SUMMARIES))
def test_each_verbs_help_starts_with_its_summary(verb: str, tmp_path: Path) -> None:
    code, out, _ = kapal(f"unix://{tmp_path}/none.sock", verb, "--help", tmp=tmp_path)
    assert code == 0
    assert out.startswith(f"usage: kapal {verb} ")
    assert out.split("\n\n")[1].replace("\n", " ") == COMMAND_SUMMARIES[verb]
    assert "KAPAL_HOST" in out


def test_a_bare_repo_shows_its_commands_as_a_usage_error(tmp_path: Path) -> None:
    code, out, _ = kapal(f"unix://{tmp_path}/none.sock", "repo", tmp=tmp_path)
    assert code == 2
    assert "add" in out and "list" in out and "Register a repository" in out


@pytest.mark.parametrize(
    ("variable", "problem"),
    [
        ("KAPAL_BIND_PORT", "bind_port: Input should be a valid integer"),
        ("KAPAL_JOB_CPUS", "job_cpus: Input should be a valid number"),  # not the verbs' own
    ],
)
def test_a_bad_setting_is_named_with_exit_2(variable: str, problem: str, tmp_path: Path) -> None:
    env = {"KAPAL_HOST": f"unix://{tmp_path}/none.sock", variable: "lots"}
    result = CliRunner().invoke(build_app(), ["pipelines"], env=env)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"kapal pipelines: bad KAPAL_* setting: {problem}")
    assert len(result.stderr.splitlines()) == 1


def test_without_kapal_host_the_verbs_go_to_the_local_servers_address(tmp_path: Path) -> None:
    env = {"KAPAL_HOST": None, "KAPAL_BIND_SOCKET": str(tmp_path / "serve.sock")}
    result = CliRunner().invoke(build_app(), ["pipelines"], env=env)
    assert result.exit_code == 3
    assert f"cannot reach the kapal server at unix://{tmp_path}/serve.sock" in result.stderr
    env = {"KAPAL_HOST": "", "KAPAL_BIND_HOST": "127.0.0.1", "KAPAL_BIND_PORT": "9"}
    result = CliRunner().invoke(build_app(), ["pipelines"], env=env)
    assert result.exit_code == 3
    assert "cannot reach the kapal server at http://127.0.0.1:9 " in result.stderr


def test_the_plain_settings_reader_answers_only_what_it_can_read_alone() -> None:
    assert plain_server_settings({}) == ("http://127.0.0.1:8080", None)
    assert plain_server_settings(
        {"KAPAL_HOST": "unix:///k.sock", "kapal_token": "t", "KAPAL_SECRET_DEPLOY": "x", "X": "y"}
    ) == ("unix:///k.sock", "t")
    # any other setting, or one variable twice: Settings decides (and validates)
    assert plain_server_settings({"KAPAL_HOST": "h", "KAPAL_BIND_PORT": "1"}) is None
    assert plain_server_settings({"KAPAL_WEBHOOK_BODY_LIMIT": "1"}) is None
    assert plain_server_settings({"KAPAL_HOST": "a", "kapal_host": "b"}) is None


def settings_variables() -> set[str]:
    """The (lower-case) environment variables `Settings` reads."""
    from web.settings import Settings

    names = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        names.add(alias.lower() if isinstance(alias, str) else f"kapal_{name}")
    return names


def test_the_plain_readers_variables_are_settings_and_job_secrets_are_not() -> None:
    names = settings_variables()
    assert names >= PLAIN_VARIABLES
    # a setting named KAPAL_SECRET_* would be skipped by the plain reader as a job secret
    assert [name for name in names if name.startswith(JOB_SECRET_PREFIX)] == []


ENV_NAMES = [
    "KAPAL_HOST",
    "kapal_host",
    "KAPAL_TOKEN",
    "Kapal_Token",
    "KAPAL_DATA_DIR",
    "KAPAL_SECRET_DEPLOY_KEY",
    "KAPAL_BIND_SOCKET",
    "KAPAL_BIND_PORT",
    "KAPAL_JOB_CPUS",
    "OTHER",
]
VALUES = st.text(st.characters(codec="utf-8", exclude_characters="\x00"))


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(ENV_NAMES), VALUES, max_size=5))
@example({"KAPAL_HOST": " unix:///a b ", "KAPAL_TOKEN": "", "KAPAL_DATA_DIR": ""})
@example({"KAPAL_HOST": "", "kapal_token": " t "})
def test_the_plain_reader_gives_what_settings_give(environ: dict[str, str]) -> None:
    # whenever the plain reader answers, Settings takes the environment and says the same
    from web.settings import Settings

    plain = plain_server_settings(environ)
    if plain is None:
        return
    with mock.patch.dict(os.environ, environ, clear=True):
        assert settings_server_address(Settings()) == plain


def test_a_call_imports_httpx_but_not_typer_pydantic_or_the_settings(
    live_server: LiveServer, services: Services, tmp_path: Path
) -> None:
    register(services)
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("KAPAL_")}
    env |= {"KAPAL_HOST": live_server.unix, "KAPAL_TOKEN": ADMIN}
    env["KAPAL_DATA_DIR"] = str(tmp_path / "cli-data")
    modules, out = imported_by(env, "repo", "list")
    assert out.splitlines()[1].split()[:2] == ["1", "acme/shop"]
    httpx = sorted(m for m in modules if m.split(".")[0] == "httpx")
    assert "httpx._client" in httpx
    # httpx, without its own command line (click, rich, pygments)
    assert heavy_in(modules, "web.settings", "runner.settings", "pygments") == httpx
    # another KAPAL_* setting: the settings class reads and validates the environment
    modules, out = imported_by(env | {"KAPAL_BIND_HOST": "127.0.0.1"}, "repo", "list")
    assert "acme/shop" in out
    assert {"pydantic_settings", "web.settings"} <= modules
    assert {"typer", "click", "rich"}.isdisjoint(modules)


@pytest.mark.parametrize("args", [["pipelines", "--help"], ["logs", "-f"], ["repo", "add"]])
def test_help_and_usage_errors_import_nothing_heavy(args: list[str]) -> None:
    modules, _ = imported_by({**os.environ, "KAPAL_HOST": "unix:///nowhere.sock"}, *args)
    assert heavy_in(modules, "web.settings", "runner.settings", "web.client") == []


def test_ctrl_c_while_following_a_log_ends_it_with_130_and_no_traceback(
    live_server: LiveServer, services: Services
) -> None:
    repo = register(services)
    _, (job_id,) = add_pipeline(services, repo.id, jobs={"a": "running"})
    with services.database.transaction() as session:
        append_log(session=session, job_id=job_id, lines=["first"])
    env = dict(os.environ, KAPAL_HOST=live_server.unix, KAPAL_TOKEN=ADMIN)
    follower = subprocess.Popen(
        [sys.executable, "-m", "web.cli", "logs", "-f", str(job_id)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert follower.stdout is not None
        assert follower.stdout.readline() == "first\n"  # following: the job still runs
        follower.send_signal(signal.SIGINT)
        _, err = follower.communicate(timeout=60)
    finally:
        follower.kill()
        follower.wait()
    assert follower.returncode == 130
    assert err == "kapal logs: interrupted\n"


def test_an_empty_secret_gets_one_made_and_shown(
    live_server: LiveServer, services: Services, tmp_path: Path
) -> None:
    args = ["repo", "add", "acme/blank", "--clone-url", "/srv/none.git", "--secret", "", "--json"]
    code, out, err = kapal(live_server, *args, tmp=tmp_path)
    assert code == 0, err
    made = json.loads(out)
    assert len(made["secret"]) >= 32
    with services.database.transaction() as session:
        stored = get_repository_credentials(
            session=session, cipher=services.cipher(), repository_id=made["id"]
        )
    assert stored.webhook_secret == made["secret"]


def test_tables_and_pipeline_details_print_what_a_pipeline_wrote_harmlessly(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from web.client_cli import _show_pipeline

    hostile = "deploy\x1b]0;owned\x07\x1b[2J"
    detail = {
        "id": 7,
        "status": "failed",
        "ref": "main\x1b[31m",
        "sha": "0" * 40,
        "source": "push",
        "reason": f"job {hostile} failed",
        "message": f"fix {hostile}\nsecond line",
        "jobs": [
            {
                "id": 1,
                "name": hostile,
                "attempt": 1,
                "stage": "test",
                "status": "failed",
                "exit_code": 1,
                "started_at": None,
                "finished_at": None,
                "worker": "w",
                "reason": hostile,
                "retried": False,
            }
        ],
    }
    _show_pipeline(detail)
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert out.count("deploy\\x1b]0;owned\\x07\\x1b[2J") == 4  # reason, message, name, reason
    assert "main\\x1b[31m" in out and "second line" not in out
