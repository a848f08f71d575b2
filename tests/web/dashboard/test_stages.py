"""What a stage's jobs add up to on the pipelines list (as GitLab shows a stage)."""

from __future__ import annotations

import pytest

from web.dashboard.stages import stage_status


@pytest.mark.parametrize(
    ("jobs", "expected"),
    [
        ([("success", False), ("running", False)], "running"),
        ([("failed", False), ("pending", False)], "pending"),
        ([("success", False), ("scheduled", False)], "pending"),
        ([("success", False), ("failed", False)], "failed"),
        ([("success", False), ("failed", True)], "success"),  # allowed to fail
        ([("created", False), ("success", False)], "created"),
        ([("canceled", False), ("success", False)], "canceled"),
        ([("manual", False), ("skipped", False)], "manual"),
        ([("manual", False), ("success", False)], "success"),
        ([("skipped", False)], "skipped"),
        ([("success", False), ("skipped", False)], "success"),
    ],
)
def test_a_stage_adds_its_jobs_up(jobs: list[tuple[str, bool]], expected: str) -> None:
    assert stage_status(jobs) == expected
