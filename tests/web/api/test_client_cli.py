"""The CLI verbs that talk to a server, against a real uvicorn over its Unix socket and TCP:
what they print, their exit status, and one-line errors (never a traceback)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.web.api.conftest import ADMIN, LiveServer, RecordingDispatcher, add_pipeline, register
from tests.web.test_mirrors import Project
from web.cli import build_app
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


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_both_transports(
    live_server: LiveServer, services: Services, tmp_path: Path, transport: str
) -> None:
    register(services)
    host = live_server.unix if transport == "unix" else live_server.url
    code, out, _ = kapal(host, "repo", "list", "--json", tmp=tmp_path)
    assert code == 0
    assert '"name": "acme/shop"' in out
