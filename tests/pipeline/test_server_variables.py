"""CI_SERVER_URL, _HOST, _PORT, _PROTOCOL and _FQDN from the configured GitLab instance, with
GitLab's meanings, in jobs and in `include:` paths (`kapal plan`/`lint` take KAPAL_GITLAB_URL)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline import IncludeError, TriggerContext, load, plan
from pipeline.predefined import server_variables
from tests.support.gitlab_api import GitLabAPI, Project, serve_gitlab


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://gitlab.example.com",
            ("https://gitlab.example.com", "gitlab.example.com", "443", "https",
             "gitlab.example.com"),
        ),
        (
            "https://gitlab.example.com:8080/",
            ("https://gitlab.example.com:8080", "gitlab.example.com", "8080", "https",
             "gitlab.example.com:8080"),
        ),
        (  # the standard port is not written; the path GitLab is served under is kept
            "HTTP://GitLab.Example.com:80/gitlab/",
            ("http://gitlab.example.com/gitlab", "gitlab.example.com", "80", "http",
             "gitlab.example.com"),
        ),
        (
            "http://[fd00::5]:8929",
            ("http://[fd00::5]:8929", "fd00::5", "8929", "http", "[fd00::5]:8929"),
        ),
    ],
)  # fmt: skip
def test_server_variables_follow_gitlab(url: str, expected: tuple[str, ...]) -> None:
    names = ("CI_SERVER_URL", "CI_SERVER_HOST", "CI_SERVER_PORT", "CI_SERVER_PROTOCOL")
    assert dict(server_variables(url)) == dict(
        zip((*names, "CI_SERVER_FQDN"), expected, strict=True)
    )


@pytest.mark.parametrize(
    "url", ["", "gitlab.example.com", "ftp://gitlab.example.com", "https://:9"]
)
def test_no_server_variables_without_an_http_url(url: str) -> None:
    assert server_variables(url) == []


def test_jobs_see_the_server_variables_and_include_paths_expand_them(tmp_path: Path) -> None:
    (tmp_path / ".kapal.yml").write_text(
        "include:\n"
        "  - remote: $CI_SERVER_URL/acme/ci/-/raw/main/jobs.yml\n"
        "build:\n  script: [echo $CI_SERVER_FQDN]\n"
    )
    fetched: list[str] = []

    class Recording:
        def fetch(self, url: str) -> bytes:
            fetched.append(url)
            return b"remote-job:\n  script: [x]\n"

    context = TriggerContext(branch="main", server_url="https://gitlab.example.com:8443")
    the_plan = plan(load(tmp_path / ".kapal.yml"), context, Recording())
    assert fetched == ["https://gitlab.example.com:8443/acme/ci/-/raw/main/jobs.yml"]
    build = {v.name: v.value for v in the_plan.job("build").variables}
    assert build["CI_SERVER_FQDN"] == "gitlab.example.com:8443"
    assert build["CI_SERVER_PORT"] == "8443" and build["CI_SERVER_PROTOCOL"] == "https"
    # without an instance they are not set, and the include says what it found
    with pytest.raises(IncludeError, match=r"expects an http\(s\) URL, found '\$CI_SERVER_URL/"):
        plan(load(tmp_path / ".kapal.yml"), TriggerContext(branch="main"), Recording())
    assert len(fetched) == 1


def test_kapal_plan_and_lint_name_kapal_gitlab_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from web.cli import build_app

    api = GitLabAPI(
        projects={"acme/ci": Project({"main": {"jobs.yml": b"shared:\n  script: [x]\n"}})}
    )
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / ".kapal.yml").write_text(
        "include:\n"
        "  - project: acme/ci\n    file: jobs.yml\n"
        "  - remote: $CI_SERVER_URL/api/v4/projects/acme%2Fci/repository/files/jobs.yml/raw\n"
        "show:\n  script: [echo $CI_SERVER_HOST]\n"
    )
    with serve_gitlab(api) as url:
        monkeypatch.setenv("KAPAL_DATA_DIR", str(tmp_path / "data"))
        monkeypatch.setenv("KAPAL_GITLAB_URL", url)
        runner = CliRunner()
        planned = runner.invoke(build_app(), ["plan", str(tmp_path / "repo"), "--json"])
        assert planned.exit_code == 0, planned.stdout + planned.stderr
        assert '"shared"' in planned.stdout and f'"{url}"' in planned.stdout
        linted = runner.invoke(build_app(), ["lint", str(tmp_path / "repo")])
        assert linted.exit_code == 0, linted.stdout + linted.stderr
    # the remote include went to $CI_SERVER_URL (the instance), as did the project include
    assert [r.raw_path for r in api.requests].count(
        "/api/v4/projects/acme%2Fci/repository/files/jobs.yml/raw"
    ) == 4
