"""Deployment records of `kapal run`: one file per environment whatever its name; rollbacks."""

from __future__ import annotations

import os
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner.errors import ShipError
from runner.ship.deployments import (
    Deployment,
    LocalDeployments,
    deployments_dir,
    environment_file_name,
    rollback_target,
)

NAMES = st.text(min_size=1, max_size=120)


@given(NAMES, NAMES)
def test_environment_file_names_stay_in_the_directory_and_apart(a: str, b: str) -> None:
    for name in (a, b):
        file = environment_file_name(name)
        assert "/" not in file and "\x00" not in file and file not in (".", "..")
        assert file.endswith(".jsonl") and len(file.encode()) < 255
    if a != b:
        assert environment_file_name(a) != environment_file_name(b)


def test_histories_of_look_alike_names_do_not_mix(tmp_path: Path) -> None:
    log = LocalDeployments(tmp_path)
    for name in ("review/a", "review_a", "review?a", "../escape"):
        log.record(Deployment(environment=name, kind="registry", digest=f"sha256:{name}"))
    assert [d.digest for d in log.history("review/a")] == ["sha256:review/a"]
    assert [d.digest for d in log.history("review_a")] == ["sha256:review_a"]
    assert sorted(p.parent for p in tmp_path.rglob("*.jsonl")) == [tmp_path] * 4
    assert sorted(log.environments()) == sorted(["review/a", "review_a", "review?a", "../escape"])


def _history(*digests_and_status: tuple[str, str]) -> list[Deployment]:
    return [
        Deployment(environment="e", kind="registry", digest=d, status=s, id=i, target="r/app:1")
        for i, (d, s) in enumerate(digests_and_status, start=1)
    ]


def test_rollback_goes_to_the_last_success_with_another_digest() -> None:
    history = _history(("a", "success"), ("b", "success"), ("c", "failed"), ("b", "success"))
    assert rollback_target(history).id == 1
    assert rollback_target(history, to=2).digest == "b"
    with pytest.raises(ShipError, match="deployment 3 failed"):
        rollback_target(history, to=3)
    with pytest.raises(ShipError, match="no deployment 9"):
        rollback_target(history, to=9)
    with pytest.raises(ShipError, match="nothing was deployed"):
        rollback_target([])
    with pytest.raises(ShipError, match="no earlier deployment"):
        rollback_target(_history(("a", "success"), ("a", "success")))


def kapal(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`kapal ARGS` as a person runs it, on the data dir `data_dir`."""
    env = dict(os.environ, KAPAL_DATA_DIR=str(data_dir))
    return subprocess.run(
        [sys.executable, "-m", "web.cli", *args], env=env, capture_output=True, text=True
    )


def cells(line: str) -> int:
    """The terminal cells `line` takes (wide letters take two)."""
    return sum(2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in line)


def test_kapal_deployments_shows_what_a_pipeline_wrote_escaped_in_aligned_columns(
    tmp_path: Path,
) -> None:
    log = LocalDeployments(deployments_dir(tmp_path))
    digest = "sha256:" + "ab" * 32
    hostile = "\x1b]0;owned\x07\x1b[2J gone\nline"  # retitle and clear the reader's terminal
    log.record(Deployment("staging", "service", digest, target="web", job="ship", message=hostile))
    log.record(Deployment("staging", "service", digest, target="ウェブ", pipeline_id=4, job="j"))
    log.record(Deployment("review/x", "registry", digest, target="r/app:1", status="failed"))

    history = kapal(tmp_path, "deployments", "staging")
    assert history.returncode == 0, history.stderr
    assert "\x1b" not in history.stdout and "\x07" not in history.stdout
    assert "\\x1b]0;owned\\x07\\x1b[2J gone\\nline" in history.stdout
    lines = history.stdout.splitlines()
    assert lines[0].split() == ["id", "status", "digest", "target", "when", "who", "job", "note"]
    assert len(lines) == 3 and "#4 j" in lines[2] and "ウェブ" in lines[2]
    assert len({cells(line) for line in lines}) == 1  # every column as wide as its widest cell
    assert {line.index(digest) for line in lines[1:]} == {lines[0].index("digest")}

    overview = kapal(tmp_path, "deployments")
    assert overview.returncode == 0, overview.stderr
    rows = {line.split()[0]: line.split()[1:3] for line in overview.stdout.splitlines()[1:]}
    assert rows == {"review/x": ["-", "-"], "staging": ["2", "service"]}


@pytest.mark.parametrize(
    ("args", "code", "said"),
    [
        (["deployments", "nosuch"], 1, "error: nothing was deployed to 'nosuch'"),
        (["deployments", "a", "b"], 2, "kapal deployments: error: unrecognized arguments: b"),
        (["deployments", "--bogus"], 2, "usage: kapal deployments"),
        (["services", "bogus"], 2, "kapal services: error: argument COMMAND: invalid choice"),
        (["services", "stop"], 2, "kapal services stop: error: the following arguments"),
        (["services", "stop", "nosuch"], 1, "error: there is no service 'nosuch'"),
        (["services", "stop", "../etc"], 1, "error: service name '../etc' must be"),
    ],
)
def test_kapal_services_and_deployments_refuse_bad_arguments_in_a_line(
    tmp_path: Path, args: list[str], code: int, said: str
) -> None:
    done = kapal(tmp_path, *args)
    assert (done.returncode, done.stdout) == (code, "")
    assert said in done.stderr and "Traceback" not in done.stderr
