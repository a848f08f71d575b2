"""Artifact globs, the artifact store, JUnit parsing."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.artifacts import ArtifactStore, collect_paths, parse_junit


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for rel in (
        "dist/app.bin",
        "dist/sub/lib.so",
        "dist/sub/debug.log",
        "report.xml",
        "src/a.py",
        "src/deep/b.py",
        "other.txt",
    ):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(rel)
    return tmp_path


def test_a_directory_brings_everything_below_it(tree: Path) -> None:
    assert collect_paths(tree, ["dist/"]) == [
        "dist/app.bin",
        "dist/sub/debug.log",
        "dist/sub/lib.so",
    ]


def test_globs_and_double_star(tree: Path) -> None:
    assert collect_paths(tree, ["src/*.py"]) == ["src/a.py"]
    assert collect_paths(tree, ["src/**/*.py"]) == ["src/a.py", "src/deep/b.py"]
    assert collect_paths(tree, ["*.xml", "./other.txt"]) == ["other.txt", "report.xml"]


def test_exclude_removes_matches(tree: Path) -> None:
    assert collect_paths(tree, ["dist"], ["**/*.log"]) == ["dist/app.bin", "dist/sub/lib.so"]
    assert collect_paths(tree, ["dist"], ["dist/sub"]) == ["dist/app.bin"]


def test_paths_outside_the_project_match_nothing(tree: Path) -> None:
    assert collect_paths(tree / "src", ["../other.txt", "/etc/passwd"]) == []
    assert collect_paths(tree, ["missing/", "nothing*"]) == []


def test_store_saves_and_restores(tree: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    store = ArtifactStore(tmp_path_factory.mktemp("store"))
    stored = store.save(7, "build job", tree, ["dist/app.bin", "report.xml"])
    assert stored.size == len("dist/app.bin") + len("report.xml")
    target = tmp_path_factory.mktemp("ws")
    assert store.restore(7, "build job", target) == ["dist/app.bin", "report.xml"]
    assert (target / "dist/app.bin").read_text() == "dist/app.bin"
    assert store.restore(8, "build job", target) == []


def test_junit_testsuites_with_errors_and_skips() -> None:
    cases = parse_junit(
        b"""<testsuites><testsuite name="s">
        <testcase classname="c" name="ok" time="1.5"/>
        <testcase classname="c" name="err"><error message="boom"/></testcase>
        <testcase classname="c" name="skip"><skipped/></testcase>
        <testcase classname="c" name="bad-time" time="x"/>
        </testsuite></testsuites>"""
    )
    assert [(c.name, c.status, c.duration) for c in cases] == [
        ("ok", "passed", 1.5),
        ("err", "error", 0.0),
        ("skip", "skipped", 0.0),
        ("bad-time", "passed", 0.0),
    ]
    assert cases[1].message == "boom"


def test_junit_that_is_not_xml_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="not a JUnit XML report"):
        parse_junit("<testsuite>")


def test_prune_keeps_the_most_recent_pipelines(
    tree: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    store = ArtifactStore(tmp_path_factory.mktemp("store"))
    for pipeline_id in (3, 10, 7, 12):
        store.save(pipeline_id, "job", tree, ["report.xml"])
    assert store.prune(keep=2) == [3, 7]
    assert [store.has(i, "job") for i in (3, 7, 10, 12)] == [False, False, True, True]
