"""include: local, extends (GitLab's deep merge), default and inherit."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline import (
    ExtendsError,
    IncludeError,
    PipelineError,
    TriggerContext,
    load,
    loads,
    plan,
    resolve,
)


def _job(text: str, name: str = "job") -> dict[str, object]:
    return dict(resolve(loads(text)).data[name])


def test_extends_deep_merges_hashes_and_replaces_arrays() -> None:
    job = _job(
        ".base:\n  variables: {A: a, B: b}\n  script: [base]\n  tags: [x]\n"
        "job:\n  extends: .base\n  variables: {B: own}\n  script: [own]\n"
    )
    assert dict(job["variables"]) == {"A": "a", "B": "own"}  # type: ignore[call-overload]
    assert list(job["script"]) == ["own"]  # type: ignore[call-overload]
    assert list(job["tags"]) == ["x"]  # type: ignore[call-overload]
    assert "extends" not in job


def test_extends_multi_level_and_last_parent_wins() -> None:
    job = _job(
        ".a:\n  script: a\n  image: a\n.b:\n  script: b\n.c:\n  extends: .a\n  image: c\n"
        "job:\n  extends: [.b, .c]\n"
    )
    # .c (last) wins over .b; .c inherits script from .a, so script is "a" as GitLab documents.
    assert job["script"] == "a"
    assert job["image"] == "c"


def test_extends_cycle_names_the_cycle() -> None:
    with pytest.raises(ExtendsError, match=r"extends: cycle \.x → \.y → \.x"):
        resolve(loads(".x:\n  extends: .y\n.y:\n  extends: .x\njob:\n  extends: .x\n  script: s\n"))


def test_extends_unknown_suggests_a_name() -> None:
    with pytest.raises(ExtendsError, match=r"did you mean '\.base'"):
        resolve(loads(".base:\n  script: s\njob:\n  extends: .bsae\n"))


def test_default_applies_only_where_the_job_lacks_the_keyword() -> None:
    data = resolve(
        loads(
            "default:\n  image: alpine\n  before_script: [d]\n"
            "a:\n  script: s\nb:\n  image: debian\n  script: s\n"
        )
    ).data
    assert data["a"]["image"] == "alpine"
    assert data["b"]["image"] == "debian"
    assert list(data["b"]["before_script"]) == ["d"]


def test_inherit_default_false_and_list_and_variables() -> None:
    text = (
        "default:\n  image: alpine\n  tags: [t]\nvariables:\n  G: g\n  H: h\n"
        "none:\n  inherit: {default: false, variables: false}\n  script: s\n"
        "some:\n  inherit: {default: [tags], variables: [H]}\n  script: s\n"
    )
    result = plan(loads(text), TriggerContext(branch="main"))
    none, some = result.job("none"), result.job("some")
    assert none.image is None and none.tags == ()
    assert some.image is None and some.tags == ("t",)
    assert none.variable("G") is None and none.variable("H") is None
    assert some.variable("G") is None and some.variable("H") == "h"


def _project(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path / ".kapal.yml"


def test_include_local_forms_and_main_file_wins(tmp_path: Path) -> None:
    main = _project(
        tmp_path,
        {
            ".kapal.yml": "include:\n  - ci/a.yml\n  - local: /ci/b.yml\n"
            "shared:\n  variables: {WHO: main}\n",
            "ci/a.yml": "shared:\n  script: from-a\n  variables: {WHO: a, ONLY_A: x}\n",
            "ci/b.yml": "include: {local: ci/c.yml}\nb-job:\n  script: b\n",
            "ci/c.yml": "c-job:\n  script: c\n",
        },
    )
    doc = resolve(load(main))
    assert set(doc.included_files) == {"ci/a.yml", "ci/b.yml", "ci/c.yml"}
    shared = doc.data["shared"]
    assert shared["script"] == "from-a"
    assert dict(shared["variables"]) == {"WHO": "main", "ONLY_A": "x"}
    names = {job.name for job in plan(doc, TriggerContext(branch="main")).jobs}
    assert names == {"shared", "b-job", "c-job"}


def test_include_glob(tmp_path: Path) -> None:
    main = _project(
        tmp_path,
        {
            ".kapal.yml": "include: 'ci/*.yml'\n",
            "ci/one.yml": "one:\n  script: echo 1\n",
            "ci/two.yml": "two:\n  script: echo 2\n",
        },
    )
    names = {job.name for job in plan(load(main), TriggerContext(branch="main")).jobs}
    assert names == {"one", "two"}


def test_include_cycle_is_reported_with_the_files(tmp_path: Path) -> None:
    main = _project(
        tmp_path,
        {
            ".kapal.yml": "include: ci/a.yml\njob:\n  script: s\n",
            "ci/a.yml": "include: ci/b.yml\n",
            "ci/b.yml": "include: ci/a.yml\n",
        },
    )
    with pytest.raises(IncludeError, match=r"include cycle: ci/a\.yml → ci/b\.yml → ci/a\.yml"):
        resolve(load(main))


def test_problem_in_included_file_names_that_file(tmp_path: Path) -> None:
    main = _project(
        tmp_path,
        {".kapal.yml": "include: ci/a.yml\n", "ci/a.yml": "job:\n  scirpt: s\n"},
    )
    with pytest.raises(PipelineError) as info:
        plan(load(main), TriggerContext(branch="main"))
    shown = "\n".join(str(p) for p in info.value.problems)
    assert "ci/a.yml:2:3: job: unknown keyword 'scirpt'" in shown


@pytest.mark.parametrize(
    "entry",
    [
        "{template: Bash.gitlab-ci.yml}",
        "{project: group/ci, file: a.yml}",
        "{component: $CI_SERVER_FQDN/group/ci/lint@1.0.0}",
    ],
)
def test_gitlab_include_kinds_without_a_gitlab_fetcher_are_one_clear_error(entry: str) -> None:
    with pytest.raises(IncludeError, match="was not fetched: no GitLab fetcher was given"):
        resolve(loads(f"include:\n  - {entry}\njob:\n  script: s\n"))
