"""`@record`: a frozen dataclass whose methods are made without compiling code at import.

`dataclasses.dataclass(frozen=True)` writes the source of `__init__`, `__repr__`, `__eq__`,
`__hash__`, `__setattr__` and `__delattr__` for each class and compiles it every time the module
is imported: about half a millisecond a class, and the pipeline package has some forty, which
made them the largest part of `kapal lint`'s start-up (issue 11). `@record` lets `dataclass`
collect the fields (so `dataclasses.fields`, `replace`, `asdict` and `is_dataclass` work as
before, and mypy reads the class as a frozen dataclass) and gives the class the same methods
built from closures instead. tests/pipeline/test_records.py checks that each behaves as
`dataclass(frozen=True)`'s own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from operator import attrgetter
from typing import Any, TypeVar, dataclass_transform

__all__ = ["record"]

_T = TypeVar("_T", bound=type)


def _values_getter(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    """A function returning the tuple of an object's attributes `names`."""
    if not names:
        return lambda _obj: ()
    if len(names) == 1:
        one = attrgetter(names[0])
        return lambda obj: (one(obj),)
    return attrgetter(*names)


def _init(cls: type, fields: tuple[dataclasses.Field[Any], ...]) -> Callable[..., None]:
    """The `__init__` dataclass writes: arguments by position or keyword, defaults, factories."""
    in_init = tuple(f for f in fields if f.init)
    names = tuple(f.name for f in in_init)
    known = frozenset(names)
    # name -> (default, factory), one of them dataclasses.MISSING
    defaults = {f.name: (f.default, f.default_factory) for f in fields}
    # fields outside __init__ that have a value all the same: (name, default, factory)
    later = tuple(
        (f.name, f.default, f.default_factory)
        for f in fields
        if not f.init and (f.default, f.default_factory) != (dataclasses.MISSING,) * 2
    )
    post_init = getattr(cls, "__post_init__", None)
    setter = object.__setattr__
    missing = dataclasses.MISSING
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
            setter(self, name, default if default is not missing else factory())  # type: ignore[operator]
        if post_init is not None:
            post_init(self)

    return __init__


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field,))
def record(cls: _T) -> _T:
    """Make `cls` a frozen dataclass, as `@dataclass(frozen=True)` does, far more cheaply."""
    own = dict(cls.__dict__)  # what the class itself wrote
    if not cls.__doc__:  # dataclass would write one from inspect.signature (milliseconds)
        cls.__doc__ = f"{cls.__name__}({', '.join(own.get('__annotations__', ()))})"
    # A subclass of a frozen dataclass must say it is frozen too: then dataclass writes its
    # __setattr__ and __delattr__ (replaced below); otherwise it writes no method at all.
    frozen_base = any(
        getattr(getattr(base, "__dataclass_params__", None), "frozen", False)
        for base in cls.__mro__[1:]
    )
    dataclasses.dataclass(init=False, repr=False, eq=False, frozen=frozen_base)(cls)
    klass: type[Any] = cls
    fields = dataclasses.fields(cls)
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
            raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")
        super(klass, self).__setattr__(name, value)

    def __delattr__(self: Any, name: str) -> None:
        if type(self) is klass or name in names:
            raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")
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
    # What the class now is, for whoever asks dataclasses (a frozen subclass checks its bases).
    params = cls.__dataclass_params__  # type: ignore[attr-defined]
    params.init = params.repr = params.eq = params.frozen = True
    return cls
