"""`include: remote`: fetched with httpx from a real HTTP server, cached, `integrity:` checked."""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pipeline import IncludeError, PipelineError, TriggerContext, lint, load, plan
from runner.remote_includes import HttpFetcher

REMOTE = b"remote-job:\n  script: [echo remote]\n"
WITH_INPUTS = (
    b"spec:\n  inputs:\n    env: {default: qa}\n---\n"
    b"deploy-$[[ inputs.env ]]:\n  script:\n    - echo $[[ inputs.env ]]\n"
)
FILES = {"/ci/remote.yml": REMOTE, "/ci/deploy.yml": WITH_INPUTS, "/ci/list.yml": b"- a\n"}
MAIN = TriggerContext(branch="main")


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = FILES.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def _url(server: ThreadingHTTPServer, path: str) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}{path}"


def _main(tmp_path: Path, include: str) -> Path:
    main = tmp_path / "repo" / ".kapal.yml"
    main.parent.mkdir(parents=True, exist_ok=True)
    main.write_text(f"include:\n{include}\nunit:\n  script: s\n")
    return main


def _sri(content: bytes) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(content).digest()).decode()


def _messages(main: Path, fetcher: HttpFetcher | None) -> str:
    with pytest.raises(PipelineError) as info:
        plan(load(main), MAIN, fetcher)
    return "\n".join(str(p) for p in info.value.problems)


def test_remote_include_is_fetched_checked_and_merged(
    tmp_path: Path, server: ThreadingHTTPServer
) -> None:
    url = _url(server, "/ci/remote.yml")
    main = _main(
        tmp_path,
        f"  - remote: {url}\n    integrity: {_sri(REMOTE)}\n"
        f"  - remote: {_url(server, '/ci/deploy.yml')}\n    inputs: {{env: prod}}\n",
    )
    with HttpFetcher(tmp_path / "cache") as fetcher:
        jobs = {job.name for job in plan(load(main), MAIN, fetcher).jobs}
        assert lint(main, fetcher) == []
    assert jobs == {"unit", "remote-job", "deploy-prod"}
    assert (tmp_path / "cache" / hashlib.sha256(url.encode()).hexdigest()).read_bytes() == REMOTE


def test_a_url_string_is_a_remote_include(tmp_path: Path, server: ThreadingHTTPServer) -> None:
    main = _main(tmp_path, f"  - {_url(server, '/ci/remote.yml')}")
    with HttpFetcher(None) as fetcher:
        assert {job.name for job in plan(load(main), MAIN, fetcher).jobs} == {"unit", "remote-job"}


def test_integrity_mismatch_is_refused(tmp_path: Path, server: ThreadingHTTPServer) -> None:
    main = _main(
        tmp_path,
        f"  - remote: {_url(server, '/ci/remote.yml')}\n    integrity: {_sri(b'other')}\n",
    )
    with HttpFetcher(None) as fetcher:
        shown = _messages(main, fetcher)
    assert "does not match its integrity hash" in shown
    assert ".kapal.yml:2:" in shown


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("/ci/missing.yml", "the server answered HTTP 404"),
        ("/ci/list.yml", "must contain a mapping, found a list"),
    ],
)
def test_remote_problems_name_the_url(
    tmp_path: Path, server: ThreadingHTTPServer, path: str, fragment: str
) -> None:
    main = _main(tmp_path, f"  - remote: {_url(server, path)}\n")
    with HttpFetcher(None) as fetcher:
        assert fragment in _messages(main, fetcher)


def test_offline_uses_the_cached_copy_else_one_clear_error(
    tmp_path: Path, server: ThreadingHTTPServer
) -> None:
    url = _url(server, "/ci/remote.yml")
    main = _main(tmp_path, f"  - remote: {url}\n")
    with HttpFetcher(tmp_path / "cache") as fetcher:
        plan(load(main), MAIN, fetcher)
    server.shutdown()
    server.server_close()
    with HttpFetcher(tmp_path / "cache") as fetcher:
        assert "remote-job" in {job.name for job in plan(load(main), MAIN, fetcher).jobs}
    with HttpFetcher(tmp_path / "empty-cache") as fetcher, pytest.raises(IncludeError) as info:
        plan(load(main), MAIN, fetcher)
    assert "no cached copy" in info.value.message
    assert url in info.value.message


def test_without_a_fetcher_remote_is_one_clear_error(tmp_path: Path) -> None:
    main = _main(tmp_path, "  - remote: https://example.invalid/ci.yml\n")
    with pytest.raises(IncludeError, match="was not fetched: no fetcher was given"):
        plan(load(main), MAIN)


def test_kapal_lint_and_plan_fetch_remote_includes(
    tmp_path: Path, server: ThreadingHTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from web.cli import build_app

    monkeypatch.setenv("KAPAL_DATA_DIR", str(tmp_path / "data"))
    main = _main(tmp_path, f"  - remote: {_url(server, '/ci/remote.yml')}\n")
    (main.parent / "ci").mkdir()
    (main.parent / "ci" / "dev.yml").write_text("dev-only:\n  script: s\n")
    text = main.read_text().replace(
        "include:\n", "include:\n  - local: ci/$CI_COMMIT_REF_NAME.yml\n"
    )
    main.write_text(text)
    runner = CliRunner()
    linted = runner.invoke(build_app(), ["lint", str(main.parent)])
    # lint reads the includes as a default-branch pipeline: ci/main.yml does not exist
    assert "include: file 'ci/main.yml' (from 'ci/$CI_COMMIT_REF_NAME.yml') not found" in (
        linted.stdout + linted.stderr
    )
    planned = runner.invoke(build_app(), ["plan", str(main.parent), "--branch", "dev", "--json"])
    assert planned.exit_code == 0, planned.stdout + planned.stderr
    assert '"remote-job"' in planned.stdout and '"dev-only"' in planned.stdout
    assert any((tmp_path / "data" / "includes").iterdir())
