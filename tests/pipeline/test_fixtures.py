"""Every fixture under fixtures/valid lints clean; every one under fixtures/invalid reports the
problem its first line announces (`# expect: LINE:COL message fragment`) at that position."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipeline import Plan, TriggerContext, lint, load, plan

FIXTURES = Path(__file__).parent / "fixtures"
VALID = sorted((FIXTURES / "valid").glob("*.yml"))
INVALID = sorted((FIXTURES / "invalid").glob("*.yml"))
_EXPECT = re.compile(r"# expect: (\d+):(\d+) (.+)")


def test_there_are_enough_fixtures() -> None:
    assert len(INVALID) >= 45
    assert len(VALID) >= 10


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_fixture_reports_expected_problem(path: Path) -> None:
    match = _EXPECT.match(path.read_text().splitlines()[0])
    assert match, f"{path.name} must start with '# expect: LINE:COL fragment'"
    line, column, fragment = int(match[1]), int(match[2]), match[3].strip()
    problems = lint(path)
    shown = "\n".join(str(p) for p in problems)
    hits = [
        p
        for p in problems
        if fragment in p.message
        and p.location is not None
        and (p.location.line, p.location.column) == (line, column)
    ]
    assert hits, f"expected {line}:{column} {fragment!r} in:\n{shown}"
    assert all(str(p).startswith(f"{path}:") for p in hits)


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_valid_fixture_lints_clean_and_plans(path: Path) -> None:
    problems = lint(path)
    assert problems == [], "\n".join(str(p) for p in problems)
    for context in (
        TriggerContext(source="push", branch="main"),
        TriggerContext(source="push", tag="v1.0.0"),
        TriggerContext(source="merge_request_event", branch="feature", changed_files=()),
    ):
        result = plan(load(path), context)
        assert result.jobs
        assert Plan.from_json(result.to_json()) == result
