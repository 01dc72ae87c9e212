"""`@record` behaves as `@dataclass(frozen=True, slots=True)` does, for everything the code relies on."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rules.record_type import record


@dataclass(frozen=True, slots=True)
class Twin:
    """The stdlib's frozen, slotted dataclass: what a record must match."""

    code: str
    minutes: int
    notes: tuple[str, ...] = ()
    tags: frozenset[str] = field(default_factory=frozenset)
    cached: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "cached", self.minutes * 2)


@record
class Rec:
    """The same fields as a record."""

    code: str
    minutes: int
    notes: tuple[str, ...] = ()
    tags: frozenset[str] = field(default_factory=frozenset)
    cached: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "cached", self.minutes * 2)


@record(order=True)
class Period:
    """An ordered record."""

    year: int
    month: int


@record(eq=False)
class Identity:
    """Compared by identity."""

    name: str


@record(frozen=False)
class Counter:
    """A mutable record."""

    seen: list[str] = field(default_factory=list)
    total: int = 0


values = st.tuples(
    st.text(max_size=5),
    st.integers(-1000, 1000),
    st.lists(st.text(max_size=3), max_size=3).map(tuple),
    st.frozensets(st.sampled_from("abc")),
)


@given(values, values)
def test_equality_hash_and_repr_match_the_dataclass(a: tuple, b: tuple) -> None:  # type: ignore[type-arg]
    ra, rb, ta, tb = Rec(*a), Rec(*b), Twin(*a), Twin(*b)
    assert (ra == rb) is (ta == tb)
    assert (ra != rb) is (ta != tb)
    if ra == rb:
        assert hash(ra) == hash(rb)
    assert repr(ra).replace("Rec(", "Twin(", 1) == repr(ta)
    assert ra.cached == ta.cached == a[1] * 2


@given(values)
def test_fields_replace_asdict_pickle_and_copy(a: tuple) -> None:  # type: ignore[type-arg]
    r = Rec(*a)
    assert [f.name for f in dataclasses.fields(r)] == [f.name for f in dataclasses.fields(Twin)]
    assert dataclasses.is_dataclass(r)
    changed = dataclasses.replace(r, minutes=r.minutes + 1)
    assert changed.minutes == r.minutes + 1 and changed.cached == (r.minutes + 1) * 2
    assert dataclasses.asdict(r) == dataclasses.asdict(Twin(*a))
    for clone in (pickle.loads(pickle.dumps(r)), copy.copy(r), copy.deepcopy(r)):
        assert clone == r and clone.cached == r.cached


def test_defaults_and_factories_are_fresh_per_instance() -> None:
    assert Rec("x", 1).notes == () and Rec("x", 1).tags == frozenset()
    one, two = Counter(), Counter()
    one.seen.append("a")
    assert two.seen == [] and Counter(total=3).total == 3


def test_a_record_is_frozen_and_has_no_instance_dict() -> None:
    r = Rec("x", 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.minutes = 2  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del r.code  # type: ignore[misc]
    assert not hasattr(r, "__dict__")
    with pytest.raises(TypeError):
        Rec("x")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Rec("x", 1, cached=3)  # type: ignore[call-arg]


def test_order_eq_false_and_mutable_records() -> None:
    assert sorted([Period(2026, 3), Period(2025, 11), Period(2026, 1)]) == [
        Period(2025, 11),
        Period(2026, 1),
        Period(2026, 3),
    ]
    assert Period(2026, 1) <= Period(2026, 1) < Period(2026, 2)
    with pytest.raises(TypeError):
        _ = Period(2026, 1) < (2026, 2)  # type: ignore[operator]
    a = Identity("x")
    assert a == a and a != Identity("x") and len({a, Identity("x")}) == 2
    c = Counter()
    c.total = 5
    assert c.total == 5 and c == Counter(total=5)
    with pytest.raises(TypeError):
        hash(c)


def test_a_field_without_default_after_one_with_is_refused_when_the_class_is_defined() -> None:
    with pytest.raises(TypeError, match="non-default field 'b'"):

        @record
        class Bad:
            """Out of order."""

            a: int = 0
            b: int  # type: ignore[misc]


def test_init_is_compiled_on_first_use_and_then_is_the_class_own() -> None:
    @record
    class Fresh:
        """Never called yet."""

        x: int
        y: str = "y"

    lazy = Fresh.__init__
    assert Fresh(1) == Fresh(1, "y")
    assert Fresh.__init__ is not lazy and Fresh.__init__.__qualname__.endswith("Fresh.__init__")


def test_a_one_field_record_compares_as_the_dataclass_does() -> None:
    @dataclass(frozen=True, slots=True)
    class OneTwin:
        """One field."""

        value: float

    @record
    class One:
        """One field."""

        value: float

    nan = float("nan")
    assert (One(nan) == One(nan)) is (OneTwin(nan) == OneTwin(nan)) is True  # the same object: equal
    assert (One(float("nan")) == One(float("nan"))) is (OneTwin(float("nan")) == OneTwin(float("nan")))
    assert hash(One(1.5)) == hash(One(1.5)) and One(1.5) != One(2.5)
