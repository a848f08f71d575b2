"""`include: project`, `component` and `template` read from a GitLab API served over real HTTP.

The server (tests/support/gitlab_api.py) answers as GitLab's REST API does and records every
request, so each test checks both what kapal planned and what it asked for: encoded paths, the
token sent to the instance alone, what the cache spares.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import IncludeError, PipelineError, TriggerContext, lint, load, plan
from runner.gitlab_includes import GitLabFiles, latest_release
from runner.remote_includes import HttpFetcher
from tests.support.gitlab_api import GitLabAPI, Project, serve_gitlab

TOKEN = "glpat-test-token"
SHA = "0123456789abcdef0123456789abcdef01234567"
MAIN = TriggerContext(branch="main")

BASE = b"""include:
  - local: ci/common.yml
.base:
  image: alpine
project-job:
  extends: .base
  script: [echo from the project]
"""
COMMON = b"common-from-project:\n  script: [echo common]\n"
LINT = b"""spec:
  inputs:
    stage: {default: test}
---
lint-$[[ inputs.stage ]]:
  stage: $[[ inputs.stage ]]
  script: [echo lint]
"""
DEPLOY = b"""spec:
  inputs:
    environment: {options: [staging, production]}
---
include:
  - local: templates/deploy/steps.yml
deploy-$[[ inputs.environment ]]:
  stage: deploy
  script:
    - echo $[[ inputs.environment ]]
"""
STEPS = b"deploy-steps:\n  stage: deploy\n  script: [echo steps]\n"
BASH = "bash-template-job:\n  script: [echo bash]\n"


def _component(tag: str) -> dict[str, bytes]:
    return {
        "templates/lint.yml": LINT.replace(b"echo lint", f"echo lint {tag}".encode()),
        "templates/deploy/template.yml": DEPLOY,
        "templates/deploy/steps.yml": STEPS,
    }


def _api() -> GitLabAPI:
    ci_files = {
        "ci/base.yml": BASE,
        "ci/common.yml": COMMON,
        "ci/broken.yml": b"job:\n  script: [unclosed\n",
        "ci/list.yml": b"- a\n",
        "ci/huge.yml": b"# " + b"x" * (5 * 1024 * 1024) + b"\n",
        "ci/with-template.yml": b"include:\n  - template: Bash.gitlab-ci.yml\n",
        "ci/%2F.yml": b"percent-job:\n  script: [s]\n",
        "ci/loop.yml": b"include: [{project: group/ci, file: ci/loop.yml}]\n",
    }
    return GitLabAPI(
        projects={
            "group/ci": Project(
                refs={"main": ci_files, "v1": {"ci/base.yml": BASE, "ci/common.yml": COMMON}},
            ),
            "group/pinned": Project(refs={SHA: {"ci/pinned.yml": b"pinned:\n  script: [s]\n"}}),
            "group/private": Project(
                refs={"main": {"ci/secret.yml": b"secret-job:\n  script: [s]\n"}}, private=True
            ),
            "group/forbidden": Project(refs={"main": {}}, forbidden=True),
            "group/components": Project(
                refs={tag: _component(tag) for tag in ("0.9.0", "1.2.0", "1.10.0", "2.0.0-rc1")},
                # newest release first, as the API lists them: dates are not versions
                releases=["0.9.0", "2.0.0-rc1", "1.2.0", "1.10.0", "not-semver"],
            ),
        },
        templates={"Bash": BASH, "Jobs/Build": "build-template-job:\n  script: [s]\n"},
        token=TOKEN,
    )


@pytest.fixture(scope="module")
def _served() -> Iterator[tuple[GitLabAPI, str]]:
    served = _api()
    with serve_gitlab(served) as url:
        yield served, url


@pytest.fixture
def api(_served: tuple[GitLabAPI, str]) -> GitLabAPI:
    """The module's server, with every project, template and no request, as _api() makes them."""
    served, _ = _served
    fresh = _api()
    served.projects, served.templates, served.requests = fresh.projects, fresh.templates, []
    return served


@pytest.fixture
def gitlab(api: GitLabAPI, _served: tuple[GitLabAPI, str]) -> str:
    return _served[1]


def _fetcher(url: str, cache: Path | None = None, token: str = TOKEN) -> HttpFetcher:
    return HttpFetcher(None, gitlab=GitLabFiles(url, token, cache))


def _main(tmp_path: Path, include: str, jobs: str = "unit:\n  script: s\n") -> Path:
    main = tmp_path / "repo" / ".kapal.yml"
    main.parent.mkdir(parents=True, exist_ok=True)
    # a local file of the same name: a project's `include: local` must not read it
    (main.parent / "ci").mkdir(exist_ok=True)
    (main.parent / "ci" / "common.yml").write_text("common-from-this-repo:\n  script: [s]\n")
    main.write_text(f"include:\n{include}\n{jobs}")
    return main


def _jobs(main: Path, fetcher: HttpFetcher) -> set[str]:
    with fetcher:
        return {job.name for job in plan(load(main), MAIN, fetcher).jobs}


def _problems(main: Path, fetcher: HttpFetcher | None) -> list[PipelineError]:
    with pytest.raises(PipelineError) as info:
        plan(load(main), MAIN, fetcher)
    if fetcher is not None:
        fetcher.close()
    return info.value.problems


def _shown(main: Path, fetcher: HttpFetcher | None) -> str:
    return "\n".join(str(p) for p in _problems(main, fetcher))


# -- include: project ----------------------------------------------------------------------------


def test_project_file_and_its_nested_local_include_come_from_the_project(
    tmp_path: Path, gitlab: str, api: GitLabAPI
) -> None:
    main = _main(tmp_path, "  - project: group/ci\n    ref: v1\n    file: /ci/base.yml\n")
    assert _jobs(main, _fetcher(gitlab)) == {"unit", "project-job", "common-from-project"}
    assert [(r.raw_path, r.query, r.token) for r in api.requests] == [
        ("/api/v4/projects/group%2Fci/repository/files/ci%2Fbase.yml/raw", {"ref": ["v1"]}, TOKEN),
        (
            "/api/v4/projects/group%2Fci/repository/files/ci%2Fcommon.yml/raw",
            {"ref": ["v1"]},
            TOKEN,
        ),
    ]


def test_project_without_ref_reads_the_default_branch_and_a_list_of_files(
    tmp_path: Path, gitlab: str, api: GitLabAPI
) -> None:
    main = _main(
        tmp_path,
        "  - project: group/ci\n    file: [ci/common.yml, ci/with-template.yml]\n",
    )
    assert _jobs(main, _fetcher(gitlab)) == {"unit", "common-from-project", "bash-template-job"}
    assert all("ref" not in r.query for r in api.requests)
    assert api.requests[-1].raw_path == "/api/v4/templates/gitlab_ci_ymls/Bash"


def test_a_private_project_needs_the_token(tmp_path: Path, gitlab: str) -> None:
    main = _main(tmp_path, "  - project: group/private\n    file: ci/secret.yml\n")
    assert "secret-job" in _jobs(main, _fetcher(gitlab))
    shown = _shown(main, _fetcher(gitlab, token=""))
    assert "include: project 'group/private' file 'ci/secret.yml': GitLab has no project" in shown
    assert "a private project needs KAPAL_GITLAB_TOKEN" in shown


@pytest.mark.parametrize(
    ("include", "token", "fragment"),
    [
        (
            "  - project: group/ci\n    file: ci/base.yml\n",
            "wrong",
            "401 Unauthorized: KAPAL_GITLAB_TOKEN is wrong, expired or revoked",
        ),
        (
            "  - project: group/forbidden\n    file: ci/a.yml\n",
            TOKEN,
            "403 Forbidden: the token in KAPAL_GITLAB_TOKEN may not read project 'group/forbidden'",
        ),
        (
            "  - project: group/nope\n    file: ci/a.yml\n",
            TOKEN,
            "GitLab has no project 'group/nope'",
        ),
        (
            "  - project: group/ci\n    ref: nope\n    file: ci/base.yml\n",
            TOKEN,
            "project 'group/ci' has no branch, tag or commit 'nope'",
        ),
        (
            "  - project: group/ci\n    ref: main\n    file: ci/missing.yml\n",
            TOKEN,
            "project 'group/ci' has no file 'ci/missing.yml' at ref 'main'",
        ),
        (
            "  - project: group/ci\n    file: ci/list.yml\n",
            TOKEN,
            "included file group/ci:ci/list.yml must contain a mapping, found a list",
        ),
        (
            "  - project: group/ci\n    file: ci/huge.yml\n",
            TOKEN,
            "larger than 4 MiB",
        ),
    ],
)
def test_project_failures_are_one_positioned_message_naming_the_include(
    tmp_path: Path, gitlab: str, include: str, token: str, fragment: str
) -> None:
    problems = _problems(_main(tmp_path, include), _fetcher(gitlab, token=token))
    assert len(problems) == 1, problems
    assert isinstance(problems[0], IncludeError)
    assert fragment in str(problems[0])
    # at the `file:` the problem is with (the include is on line 2 of the main file)
    line = 2 + next(i for i, text in enumerate(include.splitlines()) if "file:" in text)
    assert str(problems[0].location).startswith(f"{tmp_path / 'repo' / '.kapal.yml'}:{line}:")


def test_bad_yaml_in_a_project_file_is_positioned_in_that_file(tmp_path: Path, gitlab: str) -> None:
    main = _main(tmp_path, "  - project: group/ci\n    ref: main\n    file: ci/broken.yml\n")
    problems = _problems(main, _fetcher(gitlab))
    assert len(problems) == 1
    assert str(problems[0]).startswith("group/ci:ci/broken.yml@main:3:1: invalid YAML")


def test_errors_a_failed_project_include_causes_are_summarised_under_it(
    tmp_path: Path, gitlab: str
) -> None:
    jobs = "".join(f"job{i}:\n  extends: .from-project\n" for i in range(5))
    main = _main(tmp_path, "  - project: group/ci\n    file: ci/missing.yml\n", jobs)
    problems = _problems(main, _fetcher(gitlab))
    assert len(problems) == 1, problems
    assert "has no file 'ci/missing.yml' on its default branch" in problems[0].message
    assert "most likely because of it, 5 more problems" in problems[0].message


def test_a_project_file_including_itself_is_a_cycle(tmp_path: Path, gitlab: str) -> None:
    main = _main(tmp_path, "  - project: group/ci\n    file: ci/loop.yml\n")
    problems = _problems(main, _fetcher(gitlab))
    assert [str(p) for p in problems] == [
        "group/ci:ci/loop.yml:1:37: include cycle: group/ci:ci/loop.yml → group/ci:ci/loop.yml"
    ]


def test_without_a_gitlab_instance_each_include_is_one_clear_message(tmp_path: Path) -> None:
    main = _main(
        tmp_path,
        "  - project: group/ci\n    file: ci/base.yml\n"
        "  - component: $CI_SERVER_FQDN/group/components/lint@1.2.0\n"
        "  - template: Bash.gitlab-ci.yml\n",
    )
    problems = _problems(main, HttpFetcher(None))
    assert [str(p.location).rsplit(":", 2)[1] for p in problems] == ["3", "4", "5"]
    for problem in problems:
        assert problem.message.endswith(
            ": needs a GitLab instance: set KAPAL_GITLAB_URL (and KAPAL_GITLAB_TOKEN for private "
            "projects), or copy the file into the repository and use `include: local`"
        )
    assert problems[0].message.startswith("include: project 'group/ci' file 'ci/base.yml'")


def test_a_url_that_is_not_the_api_says_so(tmp_path: Path, gitlab: str) -> None:
    main = _main(tmp_path, "  - project: group/ci\n    file: ci/base.yml\n")
    shown = _shown(main, _fetcher(gitlab + "/gitlab"))
    assert f"{gitlab}/gitlab answered '404 Not Found' for project 'group/ci'" in shown
    assert "is KAPAL_GITLAB_URL the instance's address" in shown


def test_a_malformed_gitlab_url_is_named_by_each_include(tmp_path: Path) -> None:
    main = _main(tmp_path, "  - template: Bash.gitlab-ci.yml\n")
    shown = _shown(main, _fetcher("gitlab.example.com"))
    assert "KAPAL_GITLAB_URL='gitlab.example.com' is not the http(s) URL" in shown
    shown = _shown(main, _fetcher("https://me:hunter2@gitlab.example.com"))
    assert "KAPAL_GITLAB_URL holds a user name or password" in shown
    assert "hunter2" not in shown


# -- paths cannot leave the API route ------------------------------------------------------------


@pytest.mark.parametrize(
    ("include", "fragment"),
    [
        ("  - project: group/ci\n    file: ../../templates/x.yml\n", "points outside the project"),
        ("  - project: group/ci/../private\n    file: a.yml\n", "expects a project's full path"),
        ("  - project: group%2Fci\n    file: a.yml\n", "expects a project's full path"),
        ("  - project: group/ci\n    file: 'ci/*.yml'\n", "has a wildcard"),
        ("  - project: group/ci\n    file: ci/a.txt\n", "must be a .yml or .yaml file"),
        ("  - project: group/ci\n", "needs `file:`"),
        ("  - template: ../../etc/x.gitlab-ci.yml\n", "expects a GitLab template name"),
    ],
)
def test_paths_that_would_leave_the_project_are_refused_before_any_request(
    tmp_path: Path, gitlab: str, api: GitLabAPI, include: str, fragment: str
) -> None:
    assert fragment in _shown(_main(tmp_path, include), _fetcher(gitlab))
    assert api.requests == []


@pytest.mark.parametrize(
    ("project", "path", "expected"),
    [
        ("group/ci", "..", "/api/v4/projects/group%2Fci/repository/files/%2E%2E/raw"),
        (
            "group/ci",
            "../../../templates/gitlab_ci_ymls/Bash",
            "/api/v4/projects/group%2Fci/repository/files/"
            "..%2F..%2F..%2Ftemplates%2Fgitlab_ci_ymls%2FBash/raw",
        ),
        (
            "group/ci/../private",
            "ci/secret.yml",
            "/api/v4/projects/group%2Fci%2F..%2Fprivate/repository/files/ci%2Fsecret.yml/raw",
        ),
        (
            "group/ci",
            "ci/%2F..%2Fx.yml",
            "/api/v4/projects/group%2Fci/repository/files/ci%2F%252F..%252Fx.yml/raw",
        ),
    ],
)
def test_the_client_encodes_each_path_as_one_segment(
    gitlab: str, api: GitLabAPI, project: str, path: str, expected: str
) -> None:
    """Even what the resolver refuses stays one path segment if it reaches the client."""
    files = GitLabFiles(gitlab, TOKEN)
    try:
        with pytest.raises(IncludeError) if "private" in project else contextlib.nullcontext():
            assert files.project_file(project, path, None) is None
    finally:
        files.close()
    assert [r.raw_path for r in api.requests] == [expected]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    path=st.text(min_size=1, max_size=40).filter(lambda t: "\x00" not in t),
    ref=st.one_of(st.none(), st.text(min_size=1, max_size=20).filter(lambda t: "\x00" not in t)),
)
def test_any_path_and_ref_reach_gitlab_as_one_segment_and_the_ref(
    _served: tuple[GitLabAPI, str], path: str, ref: str | None
) -> None:
    """Whatever the path (slashes, dots, %, ?, #, spaces, any letters), GitLab gets exactly
    that file name as one segment of the files route, and exactly that ref."""
    served, url = _served
    served.requests = []
    files = GitLabFiles(url, TOKEN)
    try:
        files.project_file("group/ci", path, ref)
    except IncludeError as exc:  # an unknown ref: a 404 naming it
        assert ref is not None and "has no branch, tag or commit" in exc.message
    finally:
        files.close()
    [seen] = served.requests
    parts = seen.raw_path.split("/")
    assert parts[:7] == ["", "api", "v4", "projects", "group%2Fci", "repository", "files"]
    assert len(parts) == 9 and parts[8] == "raw"
    assert unquote(parts[7]) == path
    assert seen.query.get("ref") == (None if ref is None else [ref])


def test_a_percent_in_a_file_name_reaches_gitlab_as_a_percent(gitlab: str) -> None:
    files = GitLabFiles(gitlab, TOKEN)
    try:
        assert (
            files.project_file("group/ci", "ci/%2F.yml", "main") == b"percent-job:\n  script: [s]\n"
        )
    finally:
        files.close()


# -- the token goes to the instance only ---------------------------------------------------------


def test_the_token_is_never_sent_with_an_include_remote(
    tmp_path: Path, gitlab: str, api: GitLabAPI
) -> None:
    url = f"{gitlab}/api/v4/projects/group%2Fci/repository/files/ci%2Fcommon.yml/raw?ref=main"
    main = _main(tmp_path, f"  - remote: '{url}'\n  - project: group/ci\n    file: ci/base.yml\n")
    fetcher = HttpFetcher(None, gitlab=GitLabFiles(gitlab, TOKEN))
    assert "common-from-project" in _jobs(main, fetcher)
    tokens = {r.raw_path.split("/")[7]: r.token for r in api.requests}
    assert api.requests[0].token is None  # the remote include
    assert tokens["ci%2Fbase.yml"] == TOKEN


@pytest.mark.parametrize(
    ("url", "token", "refused"),
    [
        ("http://gitlab.example.com", TOKEN, True),
        ("http://10.0.0.5:8080/gitlab", TOKEN, True),
        ("http://gitlab.example.com", "", False),  # a public instance, no token to leak
        ("https://gitlab.example.com", TOKEN, False),
        ("http://127.0.0.1:8929", TOKEN, False),
        ("http://localhost", TOKEN, False),
        ("http://[::1]:8080", TOKEN, False),
    ],
)
def test_a_token_is_never_sent_over_plain_http_off_this_machine(
    url: str, token: str, refused: bool
) -> None:
    files = GitLabFiles(url, token)
    assert bool(files.problem) == refused
    if refused:
        with pytest.raises(IncludeError, match=r"plain http.*use the instance's https:// URL"):
            files.project_file("group/ci", "ci/base.yml", None)  # refused before any request
        assert files._client is None


def test_a_redirect_to_another_origin_is_refused_without_sending_the_token(
    tmp_path: Path, gitlab: str, api: GitLabAPI
) -> None:
    elsewhere = GitLabAPI(projects={"group/ci": Project(refs={"main": {"ci/x.yml": BASE}})})
    with serve_gitlab(elsewhere, host="localhost") as other:
        api.projects["group/moved"] = Project(
            refs={}, redirect=f"{other}/api/v4/projects/group%2Fci/repository/files/ci%2Fx.yml/raw"
        )
        main = _main(tmp_path, "  - project: group/moved\n    file: ci/x.yml\n")
        shown = _shown(main, _fetcher(gitlab))
    assert f"GitLab redirected to {other}, another origin" in shown
    assert elsewhere.requests == []


def test_a_redirect_within_the_instance_is_followed_with_the_token(
    tmp_path: Path, gitlab: str, api: GitLabAPI
) -> None:
    api.projects["group/renamed"] = Project(
        refs={}, redirect="/api/v4/projects/group%2Fprivate/repository/files/ci%2Fsecret.yml/raw"
    )
    main = _main(tmp_path, "  - project: group/renamed\n    file: ci/secret.yml\n")
    assert "secret-job" in _jobs(main, _fetcher(gitlab))
    assert [r.token for r in api.requests] == [TOKEN, TOKEN]


# -- include: component --------------------------------------------------------------------------


def test_component_with_inputs_and_a_nested_local_include_from_its_project(
    tmp_path: Path, gitlab: str, api: GitLabAPI
) -> None:
    host = gitlab.removeprefix("http://")
    main = _main(
        tmp_path,
        "  - component: $CI_SERVER_FQDN/group/components/lint@1.2.0\n"
        "    inputs: {stage: build}\n"
        f"  - component: {host}/group/components/deploy@1.2.0\n"
        "    inputs: {environment: staging}\n",
    )
    assert _jobs(main, _fetcher(gitlab)) == {"unit", "lint-build", "deploy-staging", "deploy-steps"}
    asked = [(r.raw_path.split("/")[7], r.query["ref"]) for r in api.requests]
    assert asked == [
        ("templates%2Flint.yml", ["1.2.0"]),
        ("templates%2Fdeploy.yml", ["1.2.0"]),  # GitLab's first place for a component
        ("templates%2Fdeploy%2Ftemplate.yml", ["1.2.0"]),
        ("templates%2Fdeploy%2Fsteps.yml", ["1.2.0"]),
    ]


def test_component_inputs_are_checked_against_its_spec(tmp_path: Path, gitlab: str) -> None:
    main = _main(
        tmp_path,
        "  - component: $CI_SERVER_FQDN/group/components/deploy@1.2.0\n"
        "    inputs: {environment: moon}\n",
    )
    assert "`moon` cannot be used because it is not in the list" in _shown(main, _fetcher(gitlab))


@pytest.mark.parametrize(
    ("version", "tag"), [("~latest", "1.10.0"), ("1", "1.10.0"), ("1.2", "1.2.0"), ("0", "0.9.0")]
)
def test_latest_and_partial_versions_pick_the_highest_release_by_semver(
    tmp_path: Path, gitlab: str, api: GitLabAPI, version: str, tag: str
) -> None:
    main = _main(tmp_path, f"  - component: $CI_SERVER_FQDN/group/components/lint@{version}\n")
    with _fetcher(gitlab) as fetcher:
        the_plan = plan(load(main), MAIN, fetcher)
    script = next(job for job in the_plan.jobs if job.name == "lint-test").script
    assert script == (f"echo lint {tag}",)
    assert api.requests[0].raw_path == "/api/v4/projects/group%2Fcomponents/releases"


@pytest.mark.parametrize(
    ("component", "fragment"),
    [
        (
            "gitlab.other.test/group/components/lint@1.2.0",
            "the component is on gitlab.other.test, but kapal reads components from "
            "KAPAL_GITLAB_URL",
        ),
        (
            "$CI_SERVER_FQDN/group/components/nope@1.2.0",
            "has no component 'nope' at '1.2.0': neither templates/nope.yml nor "
            "templates/nope/template.yml exists there",
        ),
        ("$CI_SERVER_FQDN/group/components/lint@7", "has no release with a 7.x semantic version"),
        ("$CI_SERVER_FQDN/group/components/lint@9.9.9", "has no branch, tag or commit '9.9.9'"),
        ("$CI_SERVER_FQDN/group/components/lint", "needs a version after @"),
        ("$CI_SERVER_FQDN/lint@1.0.0", "expects $CI_SERVER_FQDN/group/project/component-name"),
    ],
)
def test_component_failures_name_the_component(
    tmp_path: Path, gitlab: str, component: str, fragment: str
) -> None:
    problems = _problems(_main(tmp_path, f"  - component: {component}\n"), _fetcher(gitlab))
    assert len(problems) == 1
    assert fragment in problems[0].message
    assert component in problems[0].message


def test_latest_reads_every_page_of_releases(tmp_path: Path, gitlab: str, api: GitLabAPI) -> None:
    # 150 releases, newest first: the highest version was released long ago, on page 2
    older = [f"0.{n}.0" for n in range(149, 0, -1)]
    releases = [*older[:120], "3.0.0", *older[120:]]
    api.projects["group/many"] = Project(refs={"3.0.0": _component("3.0.0")}, releases=releases)
    main = _main(tmp_path, "  - component: $CI_SERVER_FQDN/group/many/lint@~latest\n")
    with _fetcher(gitlab) as fetcher:
        the_plan = plan(load(main), MAIN, fetcher)
    assert next(job for job in the_plan.jobs if job.name == "lint-test").script == (
        "echo lint 3.0.0",
    )
    pages = [r.query.get("page") for r in api.requests if r.raw_path.endswith("/releases")]
    assert pages == [["1"], ["2"]]


def test_latest_release_skips_pre_releases_and_other_tags() -> None:
    tags = ["v1.9.0", "1.10.0-rc1", "nightly", "1.2.3+build", "v2.0.0-beta"]
    assert latest_release(tags, None) == "v1.9.0"
    assert latest_release(tags, "1.2") == "1.2.3+build"
    assert latest_release(tags, "3") is None


# -- include: template ---------------------------------------------------------------------------


def test_templates_come_from_the_templates_api(tmp_path: Path, gitlab: str, api: GitLabAPI) -> None:
    main = _main(
        tmp_path, "  - template: Bash.gitlab-ci.yml\n  - template: Jobs/Build.gitlab-ci.yml\n"
    )
    assert _jobs(main, _fetcher(gitlab)) == {"unit", "bash-template-job", "build-template-job"}
    assert [r.raw_path for r in api.requests] == [
        "/api/v4/templates/gitlab_ci_ymls/Bash",
        "/api/v4/templates/gitlab_ci_ymls/Jobs%2FBuild",
    ]
    missing = _main(tmp_path, "  - template: Nope.gitlab-ci.yml\n")
    assert "include: template 'Nope.gitlab-ci.yml': the GitLab instance has no such CI/CD" in (
        _shown(missing, _fetcher(gitlab))
    )


# -- cache and offline ---------------------------------------------------------------------------


def test_a_sha_ref_is_read_once_a_branch_every_time(
    tmp_path: Path, gitlab: str, api: GitLabAPI
) -> None:
    main = _main(
        tmp_path,
        f"  - project: group/pinned\n    ref: '{SHA}'\n    file: ci/pinned.yml\n"
        "  - project: group/ci\n    ref: main\n    file: ci/common.yml\n",
    )
    for _ in range(2):
        assert _jobs(main, _fetcher(gitlab, tmp_path / "cache")) == {
            "unit",
            "pinned",
            "common-from-project",
        }
    paths = [r.raw_path.split("/")[4] for r in api.requests]
    assert paths == ["group%2Fpinned", "group%2Fci", "group%2Fci"]


def test_offline_the_last_answers_are_used_else_one_clear_error(
    tmp_path: Path, api: GitLabAPI
) -> None:
    include = (
        "  - project: group/ci\n    file: ci/base.yml\n"
        "  - component: $CI_SERVER_FQDN/group/components/deploy@~latest\n"
        "    inputs: {environment: production}\n"
        "  - template: Bash.gitlab-ci.yml\n"
    )
    main = _main(tmp_path, include)
    expected = {
        "unit",
        "project-job",
        "common-from-project",
        "deploy-production",
        "deploy-steps",
        "bash-template-job",
    }
    with serve_gitlab(api) as url:
        assert _jobs(main, _fetcher(url, tmp_path / "cache")) == expected
    # the server is gone: same answers from the cache
    assert _jobs(main, _fetcher(url, tmp_path / "cache")) == expected
    problems = _problems(main, _fetcher(url, tmp_path / "empty"))
    assert len(problems) == 3
    for problem in problems:
        assert f"cannot reach the GitLab instance {url}" in problem.message
        assert "no cached copy" in problem.message


# -- kapal lint / plan -----------------------------------------------------------------------------


def test_kapal_plan_reads_gitlab_includes_from_the_configured_instance(
    tmp_path: Path, gitlab: str, api: GitLabAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from web.cli import build_app

    monkeypatch.setenv("KAPAL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("KAPAL_GITLAB_URL", gitlab + "/")
    monkeypatch.setenv("KAPAL_GITLAB_TOKEN", TOKEN)
    main = _main(tmp_path, "  - project: group/private\n    file: ci/secret.yml\n")
    planned = CliRunner().invoke(build_app(), ["plan", str(main.parent), "--json"])
    assert planned.exit_code == 0, planned.stdout + planned.stderr
    assert '"secret-job"' in planned.stdout
    assert any((tmp_path / "data" / "includes" / "gitlab").iterdir())
    assert api.requests[0].token == TOKEN
    monkeypatch.delenv("KAPAL_GITLAB_URL")
    linted = CliRunner().invoke(build_app(), ["lint", str(main.parent), "--json"])
    assert linted.exit_code != 0
    found = [p["message"] for p in json.loads(linted.stdout)["errors"]]
    assert len(found) == 1 and "needs a GitLab instance: set KAPAL_GITLAB_URL" in found[0]
    assert lint(main) != []
