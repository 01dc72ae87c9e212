"""`@record`: a frozen, slotted dataclass that compiles nothing when its class is defined.

To the rest of the code a `@record` class is a `@dataclass(frozen=True, slots=True)`: the same fields,
`dataclasses.fields`/`replace`/`asdict`, field-wise `==` and `hash`, a readable repr, `FrozenInstanceError`
on assignment, pickling. The difference is when the work happens. CPython 3.11's `dataclass` compiles five
or six methods per class with `exec` as the class is defined; for the ~50 records `ccm-ready evaluate`
imports, that was 60% of its start-up (issue 17). Here `dataclass` only collects the fields (no generated
method); `==`, `hash`, `repr`, ordering and immutability are shared functions reading the class's field
names, and `__init__`, the one method that must be fast, is compiled the first time the class is called.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from operator import attrgetter
from typing import Any, TypeVar, dataclass_transform, overload

T = TypeVar("T")
_FACTORY = object()  # the default of a parameter whose field has a default_factory


@overload
@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field,))
def record(cls: type[T], /) -> type[T]: ...


@overload
def record(*, frozen: bool = True, eq: bool = True, order: bool = False) -> Callable[[type[T]], type[T]]: ...


def record(
    cls: type[T] | None = None, /, *, frozen: bool = True, eq: bool = True, order: bool = False
) -> type[T] | Callable[[type[T]], type[T]]:
    """Make `cls` a slotted dataclass record (frozen unless `frozen=False`)."""

    def make(c: type[T]) -> type[T]:
        return _make(c, frozen=frozen, eq=eq, order=order)

    return make if cls is None else make(cls)


def _make(cls: type[T], *, frozen: bool, eq: bool, order: bool) -> type[T]:
    made: Any = dataclasses.dataclass(cls, init=False, repr=False, eq=False, slots=True)
    fields = dataclasses.fields(made)
    _check_defaults(made, fields)
    key = _key([f.name for f in fields if f.compare])
    compare = _comparisons(key)
    made.__record_repr__ = tuple(f.name for f in fields if f.repr)
    made.__record_slots__ = tuple(f.name for f in fields)
    own = made.__dict__
    methods: dict[str, Any] = {"__init__": _lazy_init(made, frozen), "__repr__": _repr}
    if eq:
        methods["__eq__"] = compare["__eq__"]
        if own.get("__hash__", None) is None:  # none written, or cleared by an __eq__ of its own
            methods["__hash__"] = _hash_of(key) if frozen else None
    if order:
        methods.update({name: compare[name] for name in ("__lt__", "__le__", "__gt__", "__ge__")})
    if frozen:
        methods.update(
            __setattr__=_frozen_set, __delattr__=_frozen_del, __getstate__=_getstate, __setstate__=_setstate
        )
    for name, method in methods.items():
        if name not in own or (name == "__hash__" and own[name] is None):
            setattr(made, name, method)
    return made  # type: ignore[no-any-return]


def _check_defaults(cls: type, fields: tuple[dataclasses.Field[Any], ...]) -> None:
    """The check `dataclass` makes when it compiles `__init__`, made when the class is defined."""
    seen_default = False
    for f in fields:
        if not f.init:
            continue
        has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        if seen_default and not has_default:
            raise TypeError(f"{cls.__qualname__}: non-default field {f.name!r} follows a default field")
        seen_default = seen_default or has_default


def _key(names: list[str]) -> Callable[[Any], tuple[Any, ...]]:
    """The tuple of values `==`, `hash` and ordering compare, as `dataclass` builds it."""
    if len(names) > 1:
        return attrgetter(*names)  # a tuple, built in C
    if names:
        one = attrgetter(names[0])
        return lambda record: (one(record),)
    return lambda _record: ()


def _comparisons(key: Callable[[Any], Any]) -> dict[str, Callable[[Any, Any], Any]]:
    """`==` and ordering over `key`, for one class (closures: nothing is compiled)."""

    def __eq__(self: Any, other: Any) -> Any:
        if other.__class__ is self.__class__:
            return key(self) == key(other)
        return NotImplemented

    def other_key(self: Any, other: Any) -> Any:
        if other.__class__ is not self.__class__:
            raise TypeError(f"cannot order {type(self).__qualname__} and {type(other).__qualname__}")
        return key(other)

    def __lt__(self: Any, other: Any) -> Any:
        return key(self) < other_key(self, other)

    def __le__(self: Any, other: Any) -> Any:
        return key(self) <= other_key(self, other)

    def __gt__(self: Any, other: Any) -> Any:
        return key(self) > other_key(self, other)

    def __ge__(self: Any, other: Any) -> Any:
        return key(self) >= other_key(self, other)

    return {"__eq__": __eq__, "__lt__": __lt__, "__le__": __le__, "__gt__": __gt__, "__ge__": __ge__}


def _hash_of(key: Callable[[Any], Any]) -> Callable[[Any], int]:
    def __hash__(self: Any) -> int:
        return hash(key(self))

    return __hash__


def _repr(self: Any) -> str:
    cls = type(self)
    shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in cls.__record_repr__)
    return f"{cls.__qualname__}({shown})"


def _frozen_set(self: Any, name: str, value: Any) -> None:
    raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")


def _frozen_del(self: Any, name: str) -> None:
    raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")


def _getstate(self: Any) -> list[Any]:
    return [getattr(self, name) for name in type(self).__record_slots__]


def _setstate(self: Any, state: list[Any]) -> None:
    for name, value in zip(type(self).__record_slots__, state, strict=True):
        object.__setattr__(self, name, value)


def _lazy_init(cls: Any, frozen: bool) -> Callable[..., None]:
    """An `__init__` that compiles the class's real one, puts it on the class and runs it."""

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init = _compile_init(cls, frozen)
        cls.__init__ = init
        init(self, *args, **kwargs)

    return __init__


def _compile_init(cls: Any, frozen: bool) -> Callable[..., None]:
    """The `__init__` `dataclass` would write: parameters with their defaults, then `__post_init__`."""
    names: dict[str, Any] = {"__set": object.__setattr__, "__FACTORY": _FACTORY}
    params: list[str] = []
    body: list[str] = []
    for f in dataclasses.fields(cls):
        value = f.name
        if f.default is not dataclasses.MISSING:
            names[f"__d_{f.name}"] = f.default
            default, value = f"__d_{f.name}", (f.name if f.init else f"__d_{f.name}")
        elif f.default_factory is not dataclasses.MISSING:
            names[f"__f_{f.name}"] = f.default_factory
            default = "__FACTORY"
            value = f"__f_{f.name}() if {f.name} is __FACTORY else {f.name}" if f.init else f"__f_{f.name}()"
        elif not f.init:
            continue  # set by __post_init__
        else:
            default = ""
        if f.init:
            params.append(f"{f.name}={default}" if default else f.name)
        body.append(f"__set(self, {f.name!r}, {value})" if frozen else f"self.{f.name} = {value}")
    if hasattr(cls, "__post_init__"):
        body.append("self.__post_init__()")
    source = f"def __init__(self, {', '.join(params)}):\n    " + "\n    ".join(body or ["pass"])
    exec(source, names)  # the source is built above from the class's own field names
    init: Callable[..., None] = names["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    return init
