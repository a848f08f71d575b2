"""Loading YAML with positions: anchors, merge keys, !reference, and hostile input."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline import (
    LoadError,
    PipelineError,
    PipelineWarning,
    TriggerContext,
    find_pipeline_file,
    lint,
    load,
    loads,
    plan,
    resolve,
)
from pipeline.document import MAX_NODES, YList, YMap


def test_positions_are_kept_for_keys_and_values() -> None:
    doc = loads("build:\n  stage: build\n  script:\n    - make\n", "ci.yml")
    job = doc.data["build"]
    assert isinstance(job, YMap)
    assert (job.key_at("stage").line, job.key_at("stage").column) == (2, 3)
    assert (job.value_at("stage").line, job.value_at("stage").column) == (2, 10)
    script = job["script"]
    assert isinstance(script, YList)
    assert (script.item_at(0).line, script.item_at(0).column) == (4, 7)
    assert job.key_at("stage").file == "ci.yml"


def test_merge_keys_own_keys_win_and_first_source_wins() -> None:
    doc = loads(
        ".a: &a {x: a1, y: a2}\n.b: &b {x: b1, z: b3}\n"
        "job:\n  <<: [*a, *b]\n  y: own\n  script: s\n"
    )
    job = doc.data["job"]
    assert (job["x"], job["y"], job["z"]) == ("a1", "own", "b3")


def test_duplicate_key_is_a_warning_naming_both_places_and_the_last_wins() -> None:
    """GitLab keeps the last of two equal keys; kapal does too and warns, naming both."""
    doc = loads("job:\n  script: a\n  when: manual\n  script: b\n", "ci.yml")
    assert doc.data["job"]["script"] == "b"
    assert list(doc.data["job"]) == ["script", "when"]
    [warning] = doc.warnings
    assert isinstance(warning, PipelineWarning) and warning.severity == "warning"
    assert str(warning).startswith(
        "ci.yml:4:3: duplicate key 'script': it is also written at line 2, column 3; "
        "the last one wins"
    )
    assert plan(doc, TriggerContext(branch="main")).job("job").script == ("b",)


THREE_DUPLICATES = (
    "image: a\ntest:\n  script: s\n  image: b\n  image: c\n"
    "build:\n  script: s\ntest:\n  script: t\n  when: x\n  when: on_success\nimage: d\n"
)


def test_every_duplicate_key_of_a_file_is_reported_together(tmp_path: Path) -> None:
    """Nested ones too (inside the second `test`), each naming the place before, in file order."""
    doc = loads(THREE_DUPLICATES, "ci.yml")
    shown = [str(p).split(";")[0] for p in doc.warnings]
    assert shown == [
        "ci.yml:5:3: duplicate key 'image': it is also written at line 4, column 3",
        "ci.yml:8:1: duplicate key 'test': it is also written at line 2, column 1",
        "ci.yml:11:3: duplicate key 'when': it is also written at line 10, column 3",
        "ci.yml:12:1: duplicate key 'image': it is also written at line 1, column 1",
    ]
    # the last `test` and the last `image` are the ones planned
    assert doc.data["test"]["script"] == "t" and doc.data["image"] == "d"
    (tmp_path / "ci.yml").write_text(THREE_DUPLICATES)
    linted = [str(p).split(";")[0] for p in lint(tmp_path / "ci.yml")]
    assert linted == [f"{tmp_path / 'ci.yml'}:{line[7:]}" for line in shown]


def test_duplicates_do_not_hide_a_later_yaml_error_in_the_same_file() -> None:
    with pytest.raises(LoadError) as caught:
        loads("a: 1\na: 2\nb: !custom x\n", "ci.yml")
    assert str(caught.value).startswith("ci.yml:3:4: unsupported YAML tag '!custom'")


def test_duplicates_in_an_included_file_are_all_reported(tmp_path: Path) -> None:
    (tmp_path / "ci").mkdir()
    (tmp_path / "ci" / "jobs.yml").write_text(
        "a:\n  script: s\n  stage: t\n  stage: test\n  script: v\n"
    )
    (tmp_path / ".kapal.yml").write_text("include: ci/jobs.yml\nb:\n  script: s\nb:\n  script: t\n")
    problems = lint(tmp_path / ".kapal.yml")
    assert [str(p).split(";")[0].rsplit("/", 1)[-1] for p in problems] == [
        ".kapal.yml:4:1: duplicate key 'b': it is also written at line 2, column 1",
        "jobs.yml:4:3: duplicate key 'stage': it is also written at line 3, column 3",
        "jobs.yml:5:3: duplicate key 'script': it is also written at line 2, column 3",
    ]
    assert all(p.severity == "warning" for p in problems)
    result = plan(load(tmp_path / ".kapal.yml"), TriggerContext(branch="main"))
    assert result.job("a").script == ("v",) and result.job("b").script == ("t",)
    assert [(w.line, w.column) for w in result.warnings] == [(4, 1), (4, 3), (5, 3)]


def test_keys_that_differ_only_in_yaml_type_are_not_duplicates() -> None:
    doc = loads("variables:\n  1: one\n  '1': also one\n  true: yes\njob:\n  script: s\n")
    assert doc.data["variables"]["1"] == "also one"


def test_overriding_a_merged_key_is_not_a_duplicate() -> None:
    doc = loads(
        ".base: &base {image: python:3.12, stage: test}\n"
        ".more: &more {tags: [docker]}\n"
        "job:\n  <<: *base\n  <<: *more\n  image: python:3.13\n  script: s\n"
    )
    job = doc.data["job"]
    assert (job["image"], job["stage"], list(job["tags"])) == ("python:3.13", "test", ["docker"])


def test_aliases_share_values_and_scalars_keep_yaml_types() -> None:
    doc = loads("v: &v [1, 2.5, true, null, '08']\nw: *v\n")
    assert doc.data["v"] == [1, 2.5, True, None, "08"]
    assert doc.data["w"] == doc.data["v"]


def test_timestamps_stay_text() -> None:
    doc = loads("variables:\n  DAY: 2024-01-02\njob:\n  script: echo\n")
    assert doc.data["variables"]["DAY"] == "2024-01-02"


def test_yaml_11_oddities_are_text() -> None:
    doc = loads("job:\n  script: [=, <<, !!str 5, ! x]\n")
    assert list(doc.data["job"]["script"]) == ["=", "<<", "5", "x"]


def test_alias_bomb_is_rejected_not_expanded() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 10)}]")
    with pytest.raises(LoadError, match="alias bomb"):
        loads("\n".join(lines) + "\n")
    assert MAX_NODES < 10**8


def test_recursive_alias_is_a_load_error() -> None:
    with pytest.raises(LoadError, match="refers to itself"):
        loads("a: &a\n  b: *a\n")


def test_reference_tag_is_resolved_and_spliced_into_lists() -> None:
    doc = resolve(
        loads(
            ".s:\n  script: [one, two]\njob:\n  script:\n    - !reference [.s, script]\n"
            "    - three\n"
        )
    )
    assert list(doc.data["job"]["script"]) == ["one", "two", "three"]


@pytest.mark.parametrize(
    "text",
    [
        "- a\n- b\n",
        "just a string\n",
        "42\n",
        "build: [unclosed\n",
        "? [a, b]\n: c\n",
        "a: !!binary aGVsbG8=\n",
        "a: !!python/object:os.system {}\n",
        "\x00\x01\x02",
        "a: 1\n---\nb: 2\n",
        "&a [*a]\n",
        "job: {script: [*undefined]}\n",
        "[" * 1000 + "]" * 1000,
        "job:\n  script: echo\n  parallel: 99999999999999999999999\n",
        "1: {script: x}\nnull: {script: y}\ntrue: {script: z}\n",
        "job:\n  script: null\n  image: null\n  services: null\n  needs: null\n",
    ],
)
def test_hostile_input_only_raises_pipeline_errors(text: str) -> None:
    try:
        plan(loads(text), TriggerContext(branch="main"))
    except PipelineError as exc:
        assert str(exc)
    problems = lint(loads(text)) if _loads_ok(text) else []
    assert all(isinstance(p, PipelineError) for p in problems)


def _loads_ok(text: str) -> bool:
    try:
        loads(text)
    except PipelineError:
        return False
    return True


def test_binary_file_is_a_load_error(tmp_path: Path) -> None:
    path = tmp_path / ".kapal.yml"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(LoadError, match="not UTF-8"):
        load(path)


def test_missing_file_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match="file not found"):
        load(tmp_path / "nope.yml")


def test_find_pipeline_file_prefers_kapal_yml(tmp_path: Path) -> None:
    (tmp_path / ".gitlab-ci.yml").write_text("a:\n  script: x\n")
    assert find_pipeline_file(tmp_path).name == ".gitlab-ci.yml"
    (tmp_path / ".kapal.yml").write_text("a:\n  script: x\n")
    assert find_pipeline_file(tmp_path).name == ".kapal.yml"
    assert load(tmp_path).path.endswith(".kapal.yml")


def test_no_pipeline_file_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match="no pipeline file"):
        find_pipeline_file(tmp_path)
