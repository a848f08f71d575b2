"""`@record`: a frozen dataclass made without compiling code, or importing dataclasses, at import.

`dataclasses.dataclass(frozen=True)` writes the source of `__init__`, `__repr__`, `__eq__`,
`__hash__`, `__setattr__` and `__delattr__` for each class and compiles it every time the module
is imported: about half a millisecond a class, and the pipeline package has some forty, which
made them the largest part of `kapal lint`'s start-up (issue 11). Importing `dataclasses` itself
(with the `inspect` it loads) costs several milliseconds more, a tenth of `kapal exec`.

`@record` collects the fields as `dataclass` does (annotations in definition order, a base's
fields first, defaults from class attributes or `field(...)`, `ClassVar`s skipped) and gives the
class the same methods built from closures. `field`, `fields` and `replace` here are the
record's counterparts of the dataclasses functions; `__dataclass_fields__` and
`__dataclass_params__` are made on first read (importing dataclasses then), so that
`dataclasses.fields`, `replace`, `asdict`, `astuple` and `is_dataclass` work on a record as on
the frozen dataclass it mirrors, and mypy reads it as one. tests/pipeline/test_records.py checks
each against `dataclass(frozen=True)`'s own.
"""

from __future__ import annotations

import abc
import re
import sys
from collections.abc import Callable, Mapping
from operator import attrgetter
from types import MappingProxyType, MemberDescriptorType
from typing import Any, TypeVar, dataclass_transform, overload

__all__ = ["MISSING", "Field", "field", "fields", "record", "replace"]

_T = TypeVar("_T", bound=type)
_V = TypeVar("_V")

# where a record keeps its fields (name -> Field, ClassVar pseudo-fields included, as dataclass)
_FIELDS = "__record_fields__"
# dataclass's reading of a string annotation `ClassVar[...]` or `typing.ClassVar[...]`
_MODULE_IDENTIFIER = re.compile(r"^(?:\s*(\w+)\s*\.)?\s*(\w+)")
_EMPTY_METADATA: Mapping[Any, Any] = MappingProxyType({})


class _Missing:
    """The type of `MISSING`: no default, no factory."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __reduce__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class Field:
    """A record's field, as `dataclasses.Field` describes one (defaults are `records.MISSING`)."""

    __slots__ = (
        "compare",
        "default",
        "default_factory",
        "hash",
        "init",
        "is_classvar",
        "metadata",
        "name",
        "repr",
        "type",
    )

    def __init__(
        self,
        default: Any,
        default_factory: Any,
        init: bool,
        repr: bool,
        hash: bool | None,
        compare: bool,
        metadata: Mapping[Any, Any] | None,
    ) -> None:
        self.name: str = ""
        self.type: Any = None
        self.default = default
        self.default_factory = default_factory
        self.init = init
        self.repr = repr
        self.hash = hash
        self.compare = compare
        self.metadata = _EMPTY_METADATA if metadata is None else MappingProxyType(metadata)
        self.is_classvar = False

    def __repr__(self) -> str:
        return (
            f"records.Field(name={self.name!r},type={self.type!r},default={self.default!r},"
            f"default_factory={self.default_factory!r},init={self.init!r},repr={self.repr!r},"
            f"hash={self.hash!r},compare={self.compare!r},is_classvar={self.is_classvar!r})"
        )

    def copy(self) -> Field:
        """A copy, to be named and typed by the class it is declared in."""
        made = Field(
            self.default,
            self.default_factory,
            self.init,
            self.repr,
            self.hash,
            self.compare,
            None,
        )
        made.metadata = self.metadata
        return made


@overload
def field(
    *,
    default: _V,
    init: bool = True,
    repr: bool = True,
    hash: bool | None = None,
    compare: bool = True,
    metadata: Mapping[Any, Any] | None = None,
) -> _V: ...
@overload
def field(
    *,
    default_factory: Callable[[], _V],
    init: bool = True,
    repr: bool = True,
    hash: bool | None = None,
    compare: bool = True,
    metadata: Mapping[Any, Any] | None = None,
) -> _V: ...
@overload
def field(
    *,
    init: bool = True,
    repr: bool = True,
    hash: bool | None = None,
    compare: bool = True,
    metadata: Mapping[Any, Any] | None = None,
) -> Any: ...
def field(
    *,
    default: Any = MISSING,
    default_factory: Any = MISSING,
    init: bool = True,
    repr: bool = True,
    hash: bool | None = None,
    compare: bool = True,
    metadata: Mapping[Any, Any] | None = None,
) -> Any:
    """A field's default (or factory) and flags, as `dataclasses.field` takes them."""
    if default is not MISSING and default_factory is not MISSING:
        raise ValueError("cannot specify both default and default_factory")
    return Field(default, default_factory, init, repr, hash, compare, metadata)


def _from_dataclass_field(value: Any) -> Field:
    """A `dataclasses.Field` (of a base dataclass, or written in a record) as a records.Field."""
    import dataclasses  # loaded already: `value` is one of its fields

    kind = value._field_type
    if kind is dataclasses._FIELD_INITVAR:  # type: ignore[attr-defined]
        raise TypeError(f"field {value.name}: @record does not support InitVar")
    if value.kw_only not in (dataclasses.MISSING, False):
        raise TypeError(f"field {value.name}: @record does not support kw_only fields")
    made = Field(
        MISSING if value.default is dataclasses.MISSING else value.default,
        MISSING if value.default_factory is dataclasses.MISSING else value.default_factory,
        value.init,
        value.repr,
        value.hash,
        value.compare,
        None,
    )
    made.metadata = value.metadata
    made.name, made.type = value.name, value.type
    made.is_classvar = kind is dataclasses._FIELD_CLASSVAR  # type: ignore[attr-defined]
    return made


def _declared(cls: type) -> tuple[dict[str, Field], bool] | None:
    """`cls`'s fields and frozenness as dataclass reads a base (an attribute, so inherited)."""
    for klass in cls.__mro__:
        own = klass.__dict__
        if _FIELDS in own:
            return own[_FIELDS], True
        if "__dataclass_fields__" in own:
            found = {
                name: _from_dataclass_field(value)
                for name, value in own["__dataclass_fields__"].items()
            }
            return found, bool(getattr(cls, "__dataclass_params__").frozen)  # noqa: B009
    return None


def _is_classvar(annotation: Any, typing: Any) -> bool:
    return annotation is typing.ClassVar or (
        type(annotation) is typing._GenericAlias and annotation.__origin__ is typing.ClassVar
    )


def _is_initvar(annotation: Any, dataclasses: Any) -> bool:
    return annotation is dataclasses.InitVar or type(annotation) is dataclasses.InitVar


def _names(annotation: str, cls: type, module: Any, is_it: Callable[[Any, Any], bool]) -> bool:
    """Whether a string annotation names `module.name`, read as dataclass's `_is_type` reads it.

    `X[...]` is looked up in the class's module, `m.X[...]` in `module` when the class's module
    calls it `m`.
    """
    match = _MODULE_IDENTIFIER.match(annotation)
    if not match:
        return False
    home = sys.modules.get(cls.__module__)
    namespace: dict[str, Any] | None = None
    if not match.group(1):
        namespace = home.__dict__ if home else None
    elif home and home.__dict__.get(match.group(1)) is module:
        namespace = module.__dict__
    return bool(namespace) and is_it(namespace.get(match.group(2)), module)  # type: ignore[union-attr]


def _class_field(cls: type, name: str, annotation: Any) -> Field:
    """The field `name: annotation` declared in `cls`, as dataclass's `_get_field` makes it."""
    default = getattr(cls, name, MISSING)
    dataclasses = sys.modules.get("dataclasses")
    if isinstance(default, Field):
        made = default.copy()
    elif dataclasses is not None and isinstance(default, dataclasses.Field):
        made = _from_dataclass_field(default)
    else:
        if isinstance(default, MemberDescriptorType):  # a __slots__ entry: no default
            default = MISSING
        made = Field(default, MISSING, True, True, None, True, None)
    made.name, made.type = name, annotation
    typing = sys.modules.get("typing")
    made.is_classvar = bool(typing) and (
        _is_classvar(annotation, typing)
        or (isinstance(annotation, str) and _names(annotation, cls, typing, _is_classvar))
    )
    # InitVar can only be named where dataclasses was imported
    if (
        not made.is_classvar
        and dataclasses is not None
        and (
            _is_initvar(annotation, dataclasses)
            or (isinstance(annotation, str) and _names(annotation, cls, dataclasses, _is_initvar))
        )
    ):
        raise TypeError(f"field {name}: @record does not support InitVar")
    if made.is_classvar:
        if made.default_factory is not MISSING:
            raise TypeError(f"field {name} cannot have a default factory")
    elif made.default.__class__.__hash__ is None:
        raise ValueError(
            f"mutable default {type(made.default)} for field {name} is not allowed: "
            "use default_factory"
        )
    return made


def _collect(cls: type) -> dict[str, Field]:
    """All of `cls`'s fields, bases' first, as dataclass orders them; class defaults settled."""
    collected: dict[str, Field] = {}
    dataclass_bases = frozen_bases = False
    for base in cls.__mro__[-1:0:-1]:
        declared = _declared(base)
        if declared is not None:
            dataclass_bases = True
            collected.update(declared[0])
            frozen_bases = frozen_bases or declared[1]
    # the class's own annotations, as dataclass reads them (inspect would cost its import)
    annotations = cls.__dict__.get("__annotations__", {})  # noqa: RUF063
    own = [_class_field(cls, name, annotation) for name, annotation in annotations.items()]
    dataclasses = sys.modules.get("dataclasses")
    specs: tuple[type, ...] = (Field,) if dataclasses is None else (Field, dataclasses.Field)
    for made in own:
        collected[made.name] = made
        if isinstance(getattr(cls, made.name, None), specs):
            if made.default is MISSING:
                delattr(cls, made.name)
            else:
                setattr(cls, made.name, made.default)
    for name, value in cls.__dict__.items():
        if isinstance(value, specs) and name not in annotations:
            raise TypeError(f"{name!r} is a field but has no type annotation")
    if dataclass_bases and not frozen_bases:
        raise TypeError("cannot inherit frozen dataclass from a non-frozen one")
    seen_default = False
    for made in collected.values():
        if made.is_classvar or not made.init:
            continue
        if made.default is not MISSING or made.default_factory is not MISSING:
            seen_default = True
        elif seen_default:
            raise TypeError(f"non-default argument {made.name!r} follows default argument")
    return collected


def _values_getter(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    """A function returning the tuple of an object's attributes `names`."""
    if not names:
        return lambda _obj: ()
    if len(names) == 1:
        one = attrgetter(names[0])
        return lambda obj: (one(obj),)
    return attrgetter(*names)


def _init(cls: type, fields: tuple[Field, ...]) -> Callable[..., None]:
    """The `__init__` dataclass writes: arguments by position or keyword, defaults, factories."""
    in_init = tuple(f for f in fields if f.init)
    names = tuple(f.name for f in in_init)
    known = frozenset(names)
    # name -> (default, factory), one of them MISSING
    defaults = {f.name: (f.default, f.default_factory) for f in fields}
    # fields outside __init__ that have a value all the same: (name, default, factory)
    later = tuple(
        (f.name, f.default, f.default_factory)
        for f in fields
        if not f.init and (f.default is not MISSING or f.default_factory is not MISSING)
    )
    post_init = getattr(cls, "__post_init__", None)
    setter = object.__setattr__
    missing = MISSING
    qualname = cls.__qualname__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if len(args) > len(names):
            raise TypeError(
                f"{qualname}.__init__() takes {len(names) + 1} positional arguments but "
                f"{len(args) + 1} were given"
            )
        for name, value in zip(names, args, strict=False):
            if name in kwargs:
                raise TypeError(f"{qualname}.__init__() got multiple values for argument {name!r}")
            setter(self, name, value)
        for name in kwargs:
            if name not in known:
                raise TypeError(
                    f"{qualname}.__init__() got an unexpected keyword argument {name!r}"
                )
        for name in names[len(args) :]:
            if name in kwargs:
                setter(self, name, kwargs[name])
                continue
            default, factory = defaults[name]
            if default is not missing:
                setter(self, name, default)
            elif factory is not missing:
                setter(self, name, factory())
            else:
                raise TypeError(f"{qualname}.__init__() missing required argument: {name!r}")
        for name, default, factory in later:
            setter(self, name, default if default is not missing else factory())
        if post_init is not None:
            post_init(self)

    return __init__


def _frozen_error(message: str) -> Exception:
    """dataclasses.FrozenInstanceError(message): imported only when a record is written to."""
    from dataclasses import FrozenInstanceError

    return FrozenInstanceError(message)


class _DataclassView:
    """`__dataclass_fields__` or `__dataclass_params__` of a record, made when first read.

    Importing dataclasses (and inspect) costs milliseconds that `kapal exec` does not spend:
    only code that asks dataclasses about a record pays it, once per class.
    """

    __slots__ = ("name", "owner")

    def __init__(self, owner: type, name: str) -> None:
        self.owner = owner
        self.name = name

    def __get__(self, obj: object, objtype: type | None = None) -> Any:
        value = _dataclass_view(self.owner, self.name)
        type.__setattr__(self.owner, self.name, value)  # read once: now a plain class attribute
        return value


def _dataclass_view(cls: type, name: str) -> Any:
    """The real `__dataclass_fields__` (dataclasses.Field objects) or `__dataclass_params__`."""
    import dataclasses

    if name == "__dataclass_params__":
        flags = {"init": True, "repr": True, "eq": True, "order": False, "unsafe_hash": False}
        try:
            return dataclasses._DataclassParams(frozen=True, **flags)  # type: ignore[attr-defined]
        except TypeError:  # Python 3.12 and later: more flags
            more = {"match_args": True, "kw_only": False, "slots": False, "weakref_slot": False}
            return dataclasses._DataclassParams(frozen=True, **flags, **more)  # type: ignore[attr-defined]
    made: dict[str, Any] = {}
    for spec in cls.__dict__[_FIELDS].values():
        real: Any = dataclasses.field(
            default=dataclasses.MISSING if spec.default is MISSING else spec.default,
            default_factory=(
                dataclasses.MISSING if spec.default_factory is MISSING else spec.default_factory
            ),
            init=spec.init,
            repr=spec.repr,
            hash=spec.hash,
            compare=spec.compare,
            metadata=spec.metadata,
            kw_only=dataclasses.MISSING if spec.is_classvar else False,
        )
        real.name, real.type = spec.name, spec.type
        real._field_type = (
            dataclasses._FIELD_CLASSVAR  # type: ignore[attr-defined]
            if spec.is_classvar
            else dataclasses._FIELD  # type: ignore[attr-defined]
        )
        made[spec.name] = real
    return made


def fields(class_or_instance: Any) -> tuple[Field, ...]:
    """The fields of a record (or dataclass), as `dataclasses.fields` lists them."""
    cls = class_or_instance if isinstance(class_or_instance, type) else type(class_or_instance)
    declared = _declared(cls)
    if declared is None:
        raise TypeError("must be called with a dataclass type or instance")
    return tuple(f for f in declared[0].values() if not f.is_classvar)


def replace(obj: _V, /, **changes: Any) -> _V:
    """A copy of the record `obj` with `changes`, as `dataclasses.replace` makes it."""
    declared = None if isinstance(obj, type) else _declared(type(obj))
    if declared is None:
        raise TypeError("replace() should be called on dataclass instances")
    for spec in declared[0].values():
        if spec.is_classvar:
            continue
        if not spec.init:
            if spec.name in changes:
                raise ValueError(
                    f"field {spec.name} is declared with init=False, it cannot be specified "
                    "with replace()"
                )
            continue
        if spec.name not in changes:
            changes[spec.name] = getattr(obj, spec.name)
    return obj.__class__(**changes)


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def record(cls: _T) -> _T:
    """Make `cls` a frozen dataclass, as `@dataclass(frozen=True)` does, far more cheaply."""
    own = dict(cls.__dict__)  # what the class itself wrote
    if not cls.__doc__:  # dataclass would write one from inspect.signature (milliseconds)
        cls.__doc__ = f"{cls.__name__}({', '.join(own.get('__annotations__', ()))})"
    collected = _collect(cls)
    type.__setattr__(cls, _FIELDS, collected)
    for view in ("__dataclass_params__", "__dataclass_fields__"):
        type.__setattr__(cls, view, _DataclassView(cls, view))
    klass: type[Any] = cls
    fields = tuple(f for f in collected.values() if not f.is_classvar)
    names = frozenset(f.name for f in fields)
    shown = tuple(f.name for f in fields if f.repr)
    shown_values = _values_getter(shown)
    compared = _values_getter(tuple(f.name for f in fields if f.compare))
    hashed = _values_getter(
        tuple(f.name for f in fields if (f.compare if f.hash is None else f.hash))
    )

    def __repr__(self: Any) -> str:
        inner = ", ".join(
            f"{name}={value!r}" for name, value in zip(shown, shown_values(self), strict=True)
        )
        return f"{self.__class__.__qualname__}({inner})"

    def __eq__(self: Any, other: object) -> bool:
        if other.__class__ is self.__class__:
            return bool(compared(self) == compared(other))
        return NotImplemented

    def __hash__(self: Any) -> int:
        return hash(hashed(self))

    def __setattr__(self: Any, name: str, value: Any) -> None:
        if type(self) is klass or name in names:
            raise _frozen_error(f"cannot assign to field {name!r}")
        super(klass, self).__setattr__(name, value)

    def __delattr__(self: Any, name: str) -> None:
        if type(self) is klass or name in names:
            raise _frozen_error(f"cannot delete field {name!r}")
        super(klass, self).__delattr__(name)

    # As dataclass: the class's own __init__, __repr__ and __eq__ stay, and so does a __hash__
    # it wrote (Python sets __hash__ to None itself when the class defines __eq__).
    explicit_hash = "__hash__" in own and not (own["__hash__"] is None and "__eq__" in own)
    methods: dict[str, Callable[..., Any] | None] = {
        "__init__": None if "__init__" in own else _init(cls, fields),
        "__repr__": None if "__repr__" in own else __repr__,
        "__eq__": None if "__eq__" in own else __eq__,
        "__hash__": None if explicit_hash else __hash__,
        "__setattr__": __setattr__,
        "__delattr__": __delattr__,
    }
    for name, method in methods.items():
        if method is None:
            continue
        if name in ("__setattr__", "__delattr__") and name in own:
            raise TypeError(f"Cannot overwrite attribute {name} in class {cls.__name__}")
        method.__qualname__ = f"{cls.__qualname__}.{name}"
        setattr(cls, name, method)
    if "__match_args__" not in own:
        type.__setattr__(cls, "__match_args__", tuple(f.name for f in fields if f.init))
    abc.update_abstractmethods(cls)
    return cls
