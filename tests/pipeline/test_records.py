"""`@record` behaves as `@dataclass(frozen=True)`: the same class made both ways answers alike."""

from __future__ import annotations

import dataclasses
import pickle
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.records import record


def both(namespace: dict[str, Any]) -> tuple[type, type]:
    """The class `Sample` in `namespace` made by dataclass and by record (from fresh copies)."""
    made = []
    for decorate in (dataclasses.dataclass(frozen=True), record):
        scope: dict[str, Any] = {}
        exec(namespace["source"], {"dataclasses": dataclasses, "Any": Any}, scope)
        made.append(decorate(scope["Sample"]))
    return made[0], made[1]


SOURCES = {
    "plain": """
class Sample:
    \"\"\"Doc.\"\"\"
    name: str
    count: int = 0
    tags: tuple = ()
""",
    "factories and hidden fields": """
class Sample:
    \"\"\"Doc.\"\"\"
    name: str
    items: list = dataclasses.field(default_factory=list)
    secret: Any = dataclasses.field(default=None, compare=False, repr=False)
    hashed_only: int = dataclasses.field(default=1, compare=True, hash=False)
""",
    "no fields": """
class Sample:
    \"\"\"Doc.\"\"\"
""",
    "one field": """
class Sample:
    \"\"\"Doc.\"\"\"
    only: Any
""",
    "own repr and a post-init": """
class Sample:
    \"\"\"Doc.\"\"\"
    a: Any
    b: Any = 2
    def __repr__(self):
        return "mine"
    def __post_init__(self):
        if self.a == "bad":
            raise ValueError("bad")
""",
}

values = st.one_of(st.integers(-3, 3), st.text(max_size=3), st.none(), st.tuples(st.integers()))
names = st.sampled_from(
    ["name", "count", "tags", "items", "secret", "hashed_only", "only", "a", "b", "zz"]
)
calls = st.tuples(st.lists(values, max_size=5), st.dictionaries(names, values, max_size=4))


def outcome(cls: type, args: list[Any], kwargs: dict[str, Any]) -> tuple[str, Any]:
    """What calling `cls(*args, **kwargs)` gives: ("ok", instance) or the exception's type."""
    try:
        return "ok", cls(*args, **kwargs)
    except (TypeError, ValueError) as exc:
        return "raised", type(exc)


@pytest.mark.parametrize("source", sorted(SOURCES))
@settings(max_examples=150, deadline=None)
@given(first=calls, second=calls)
def test_a_record_answers_as_a_frozen_dataclass(
    source: str, first: tuple[list[Any], dict[str, Any]], second: tuple[list[Any], dict[str, Any]]
) -> None:
    dc, rec = both({"source": SOURCES[source]})
    made = []
    for args, kwargs in (first, second):
        expected, got = outcome(dc, args, kwargs), outcome(rec, args, kwargs)
        assert expected[0] == got[0], (args, kwargs, expected, got)
        if expected[0] == "raised":
            assert expected[1] is got[1]
            continue
        a, b = expected[1], got[1]
        assert repr(a) == repr(b)
        assert dataclasses.asdict(a) == dataclasses.asdict(b)
        assert dataclasses.astuple(a) == dataclasses.astuple(b)
        try:
            expected_hash: int | type = hash(a)
        except TypeError as exc:  # a field holds a list
            expected_hash = type(exc)
        try:
            got_hash: int | type = hash(b)
        except TypeError as exc:
            got_hash = type(exc)
        assert expected_hash == got_hash
        made.append((a, b))
    if len(made) == 2:
        (a1, b1), (a2, b2) = made
        assert (a1 == a2) == (b1 == b2)
        assert (a1 != a2) == (b1 != b2)
    for a, b in made:
        assert a != b  # instances of two classes are never equal


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_a_record_is_a_frozen_dataclass_to_whoever_asks(source: str) -> None:
    dc, rec = both({"source": SOURCES[source]})
    assert dataclasses.is_dataclass(rec)
    assert [f.name for f in dataclasses.fields(rec)] == [f.name for f in dataclasses.fields(dc)]
    assert rec.__match_args__ == dc.__match_args__  # type: ignore[attr-defined]
    params = rec.__dataclass_params__  # type: ignore[attr-defined]
    assert (params.init, params.repr, params.eq, params.frozen) == (True, True, True, True)
    assert (rec.__hash__ is None) == (dc.__hash__ is None)


def test_a_record_is_frozen_and_replace_makes_a_new_one() -> None:
    @record
    class Point:
        """A point."""

        x: int
        y: int = 0

    point = Point(1)
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'x'"):
        point.x = 2  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot delete field 'y'"):
        del point.y
    moved = dataclasses.replace(point, y=5)
    assert (moved, point) == (Point(1, 5), Point(1, 0))
    assert {point, Point(1)} == {point}
    assert Point.__init__.__qualname__.endswith("Point.__init__")


def test_a_frozen_dataclass_can_extend_a_record_and_a_record_another() -> None:
    @record
    class Base:
        """The base."""

        a: int

    @dataclasses.dataclass(frozen=True)
    class Child(Base):
        """A dataclass child."""

        b: int = 1

    @record
    class Other(Base):
        """A record child."""

        c: int = 2

    assert repr(Child(1)).endswith("<locals>.Child(a=1, b=1)")
    assert Other(3) == Other(3, 2) != Base(3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        Other(3).c = 1  # type: ignore[misc]


def test_the_plan_types_are_records_that_survive_a_round_trip() -> None:
    from pipeline.plan import Job, RetrySpec

    job = Job(name="build", stage="test", base_name="build", script=("make",))
    assert job.retry == RetrySpec()
    assert pickle.loads(pickle.dumps(job)) == job
    assert hash(dataclasses.replace(job)) == hash(job)


def test_a_record_without_a_docstring_gets_one_naming_its_fields() -> None:
    @record
    class Token:
        kind: str
        column: int = 0

    assert Token.__doc__ == "Token(kind, column)"
