"""Deployment records of `kapal run`: one file per environment whatever its name; rollbacks."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner.errors import ShipError
from runner.ship.deployments import (
    Deployment,
    LocalDeployments,
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
