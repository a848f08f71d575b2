"""Every fixture under fixtures/valid lints clean; every one under fixtures/invalid reports the
problem its first line announces at that position: `# expect: LINE:COL message fragment` for an
error, `# warn: LINE:COL message fragment` for a warning (the file still plans)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipeline import Plan, TriggerContext, lint, load, plan

FIXTURES = Path(__file__).parent / "fixtures"
VALID = sorted((FIXTURES / "valid").glob("*.yml"))
INVALID = sorted((FIXTURES / "invalid").glob("*.yml"))
_EXPECT = re.compile(r"# (expect|warn): (\d+):(\d+) (.+)")


def test_there_are_enough_fixtures() -> None:
    assert len(INVALID) >= 45
    assert len(VALID) >= 10


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_fixture_reports_expected_problem(path: Path) -> None:
    match = _EXPECT.match(path.read_text().splitlines()[0])
    assert match, f"{path.name} must start with '# expect: LINE:COL fragment'"
    severity = "error" if match[1] == "expect" else "warning"
    line, column, fragment = int(match[2]), int(match[3]), match[4].strip()
    problems = lint(path)
    shown = "\n".join(str(p) for p in problems)
    hits = [
        p
        for p in problems
        if fragment in p.message
        and p.severity == severity
        and p.location is not None
        and (p.location.line, p.location.column) == (line, column)
    ]
    assert hits, f"expected {line}:{column} {fragment!r} in:\n{shown}"
    assert all(str(p).startswith(f"{path}:") for p in hits)
    if severity == "warning" and all(p.severity == "warning" for p in problems):
        assert plan(load(path), TriggerContext(source="push", branch="main")).warnings


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
