"""`@record` behaves as `@dataclass(frozen=True)`: the same class made both ways answers alike."""

from __future__ import annotations

import dataclasses
import itertools
import pickle
import subprocess
import sys
import types
import typing
from typing import Any, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import records
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


# Classes written at random, made by dataclass(frozen=True) and by @record: the same fields,
# class attributes, `__init__`, `replace` and dataclasses view. Fields are declared with
# `field(...)` of dataclasses (for both) or of records (for the record), annotations are
# strings (`from __future__ import annotations`) or objects, and the class may extend a base
# made either way.
FIELD_NAMES = ["a", "b", "c", "d", "e"]
ANNOTATIONS = ["int", "Any", "ClassVar[int]", "typing.ClassVar[int]", "tuple"]
VALUES = [
    "",
    " = 1",
    " = ()",
    " = []",
    " = field({flags})",
    " = field(default=2{sep}{flags})",
    " = field(default_factory=list{sep}{flags})",
    " = field(default_factory=tuple{sep}{flags})",
    " = field(init=False, default=3{sep}{flags})",
    " = field(init=False{sep}{flags})",
]
FLAGS = ["", "repr=False", "compare=False", "hash=True", "hash=False", "compare=False, hash=True"]

declarations = st.lists(
    st.tuples(
        st.sampled_from(FIELD_NAMES),
        st.sampled_from(ANNOTATIONS),
        st.sampled_from(VALUES),
        st.sampled_from(FLAGS),
    ),
    max_size=4,
    unique_by=lambda declared: declared[0],
)


def class_source(name: str, base: str | None, declared: list[tuple[str, str, str, str]]) -> str:
    """The source of class `name` (extending `base`) with the `declared` fields."""
    lines = [f"class {name}({base or 'object'}):", '    """Doc."""']
    for field_name, annotation, value, flags in declared:
        text = value.format(flags=flags, sep=", " if flags else "")
        lines.append(f"    {field_name}: {annotation}{text}")
    return "\n".join(lines) + "\n"


def made_class(
    source: str, future: bool, base_decorator: Any, decorator: Any, spec: Any
) -> tuple[str, Any]:
    """("ok", class Sample) made from `source` in a module of its own, or ("raised", type)."""
    module = types.ModuleType(f"records_sample_{next(SAMPLE_NUMBERS)}")
    sys.modules[module.__name__] = module
    try:
        module.__dict__.update(
            typing=typing, ClassVar=ClassVar, Any=Any, field=spec, base_decorator=base_decorator
        )
        code = ("from __future__ import annotations\n" if future else "") + source
        try:
            exec(compile(code, module.__name__, "exec"), module.__dict__)
            return "ok", decorator(module.__dict__["Sample"])
        except (TypeError, ValueError) as exc:
            return "raised", type(exc)
    finally:
        del sys.modules[module.__name__]


SAMPLE_NUMBERS = itertools.count()


def dataclass_view(cls: type) -> list[tuple[Any, ...]]:
    """What `__dataclass_fields__` says of each field (ClassVars included)."""
    return [
        (
            name,
            f.name,
            f.type,
            f.default,
            f.default_factory,
            f.init,
            f.repr,
            f.hash,
            f.compare,
            dict(f.metadata),
            f.kw_only,
            f._field_type,
        )
        for name, f in cls.__dataclass_fields__.items()  # type: ignore[attr-defined]
    ]


def as_dataclass_values(spec: records.Field) -> tuple[Any, ...]:
    """A records.Field's name, type, default, factory and flags, MISSING as dataclasses'."""

    def missing(value: Any) -> Any:
        return dataclasses.MISSING if value is records.MISSING else value

    return (
        spec.name,
        spec.type,
        missing(spec.default),
        missing(spec.default_factory),
        spec.init,
        spec.repr,
        spec.hash,
        spec.compare,
    )


def result(make: Any) -> tuple[str, Any]:
    """("ok", repr of what `make()` returns) or ("raised", the exception's type)."""
    try:
        return "ok", repr(make())
    except (TypeError, ValueError, AttributeError) as exc:  # repr: an init=False field unset
        return "raised", type(exc)


@settings(max_examples=400, deadline=None)
@given(
    base=st.none() | declarations,
    own=declarations,
    future=st.booleans(),
    base_made_by_record=st.booleans(),
    sample_made_by_record=st.booleans(),
    record_field=st.sampled_from(["records", "dataclasses"]),
    first=calls,
    changes=st.dictionaries(st.sampled_from(FIELD_NAMES), values, max_size=2),
)
def test_record_collects_fields_as_dataclass_does(
    base: list[tuple[str, str, str, str]] | None,
    own: list[tuple[str, str, str, str]],
    future: bool,
    base_made_by_record: bool,
    sample_made_by_record: bool,
    record_field: str,
    first: tuple[list[Any], dict[str, Any]],
    changes: dict[str, Any],
) -> None:
    source = (class_source("Base", None, base) if base is not None else "") + class_source(
        "Sample", "base_decorator(Base)" if base is not None else None, own
    )
    frozen = dataclasses.dataclass(frozen=True)
    expected = made_class(source, future, frozen, frozen, dataclasses.field)
    got = made_class(
        source,
        future,
        record if base_made_by_record else frozen,
        record if sample_made_by_record else frozen,
        records.field if record_field == "records" else dataclasses.field,
    )
    if record_field == "records" and not (
        sample_made_by_record and (base_made_by_record or base is None)
    ):
        # a dataclass made with records.field: dataclass itself misreads it, which is not
        # @record's to mirror
        return
    assert expected[0] == got[0], (source, expected, got)
    if expected[0] == "raised":
        assert expected[1] is got[1], (source, expected, got)
        return
    dc, rec = expected[1], got[1]
    # the record's own view, read before anything asks dataclasses about it
    assert [as_dataclass_values(f) for f in records.fields(rec)] == [
        (f.name, f.type, f.default, f.default_factory, f.init, f.repr, f.hash, f.compare)
        for f in dataclasses.fields(dc)
    ]
    for name in FIELD_NAMES:
        assert repr(getattr(dc, name, "absent")) == repr(getattr(rec, name, "absent")), name
    assert rec.__match_args__ == dc.__match_args__
    args, kwargs = first
    made_dc, made_rec = result(lambda: dc(*args, **kwargs)), result(lambda: rec(*args, **kwargs))
    assert made_dc == made_rec, (source, args, kwargs)
    if made_dc[0] == "ok":
        a, b = dc(*args, **kwargs), rec(*args, **kwargs)
        assert result(lambda: dataclasses.replace(a, **changes)) == result(
            lambda: records.replace(b, **changes)
        ), (source, changes)
    # the dataclasses view of a record, made on first read
    assert sample_made_by_record != isinstance(vars(rec)["__dataclass_fields__"], dict)
    assert dataclass_view(rec) == dataclass_view(dc)
    assert isinstance(vars(rec)["__dataclass_fields__"], dict)  # read once, kept
    if made_dc[0] == "ok":
        assert result(lambda: dataclasses.asdict(a)) == result(lambda: dataclasses.asdict(b))
        assert result(lambda: dataclasses.astuple(a)) == result(lambda: dataclasses.astuple(b))
    params, expected_params = rec.__dataclass_params__, dc.__dataclass_params__
    assert (params.init, params.repr, params.eq, params.order, params.frozen) == (
        expected_params.init,
        expected_params.repr,
        expected_params.eq,
        expected_params.order,
        expected_params.frozen,
    )
    assert dataclasses.is_dataclass(rec)
    assert [f.name for f in dataclasses.fields(rec)] == [f.name for f in dataclasses.fields(dc)]


def test_records_replace_and_fields_refuse_what_is_not_a_record() -> None:
    @record
    class Point:
        """A point."""

        x: int
        y: int = records.field(default=0, init=False)

    with pytest.raises(TypeError, match="dataclass instances"):
        records.replace(Point, x=1)  # the class, not an instance
    with pytest.raises(TypeError, match="dataclass type or instance"):
        records.fields(object())
    with pytest.raises(ValueError, match="init=False"):
        records.replace(Point(1), y=2)
    assert records.replace(Point(1), x=3) == Point(3)
    assert [f.name for f in records.fields(Point(1))] == ["x", "y"]


def test_a_record_is_made_without_importing_dataclasses() -> None:
    # `kapal exec` must not pay for dataclasses and inspect (tests/test_startup.py checks the
    # command); here, the module and a record made, replaced and compared in a fresh interpreter
    code = (
        "import sys\n"
        "from pipeline.records import field, fields, record, replace\n"
        "@record\n"
        "class P:\n"
        "    x: int\n"
        "    tags: tuple = field(default_factory=tuple)\n"
        "p = replace(P(1), x=2)\n"
        "assert p == P(2) and hash(P(1)) == hash(P(1)) and len(fields(p)) == 2\n"
        "assert 'dataclasses' not in sys.modules, 'imported'\n"
        "import dataclasses\n"
        "assert dataclasses.is_dataclass(p) and dataclasses.asdict(p) == {'x': 2, 'tags': ()}\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
