"""Variable expansion at run time."""

from __future__ import annotations

from pipeline.plan import Variable
from runner.engine.variables import expand, resolve_variables


def var(name: str, value: str, *, expand: bool = True) -> Variable:
    return Variable(name=name, value=value, source="job", expand=expand)


def test_expand_forms() -> None:
    values = {"A": "1", "B_2": "two"}
    assert expand("$A-${B_2}-$MISSING-$$A", values) == "1-two--$A"


def test_resolve_chains_and_precedence() -> None:
    got = resolve_variables([var("A", "x"), var("B", "$A/$C"), var("C", "c"), var("A", "y")])
    assert got == {"A": "y", "B": "y/c", "C": "c"}


def test_unexpanded_and_cycles() -> None:
    got = resolve_variables([var("RAW", "$HOME", expand=False), var("X", "$Y"), var("Y", "$X")])
    assert got["RAW"] == "$HOME"
    assert set(got) == {"RAW", "X", "Y"}  # a cycle ends, it does not hang


def test_dollar_escape_survives_resolution() -> None:
    assert resolve_variables([var("P", "cost $$5")])["P"] == "cost $5"
