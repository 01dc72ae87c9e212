"""What a month's verdict reads of a patient's logged time: the month, two days either side.

Only time logged in the month counts for it (cms-rules.md §3.6), so time entries and inpatient stays that
lie wholly outside the month's reach are not read, by every face alike: the panel asks the server for the
Encounters in these dates (`smart_app.readiness.fetch`), and a file, a prefetch or a packet's input is
read with the same reach (`read_facts(..., reach=)`, from `verdict_for`), so one history gives one
verdict, `skipped` included, wherever it comes from. A Task that documents an out-of-reach Encounter is
not read either, unless it carries a practitioner-attestation code. Everything else is read at any date:
Encounters whose `type` carries a CPT or HCPCS code (initiating visits, billing evidence), consents,
conditions, care plans, billed services.

The reach is two days wider than the month on each side: dates are compared by their calendar day, and
the data's offset and the practice's zone can differ by up to 26 hours; the rules cut the month exactly.
An entry's `length` is read as hours whatever its unit (the largest unit a length may have), so an entry
is never judged over before the month when its minutes could still run into it, and an Encounter without a
`period.end` is always read (an inpatient stay without one is still going on).

`within` makes the same decision on a stream, as soon as each resource is parsed, so a population's
out-of-reach history is dropped before it is grouped by patient.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import field
from datetime import date, timedelta
from typing import Any

from fhir_mapping.codes import ATTESTATION_KINDS, CPT, HCPCS, canonical_system
from fhir_mapping.references import References
from rules.month import Month
from rules.record_type import record

MARGIN = timedelta(days=2)


@record
class Reach:
    """Calendar days [lo, hi) that a time entry or stay must touch to be read."""

    lo: date
    hi: date
    texts: tuple[str, str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # lo, hi and lo less two days as YYYY-MM-DD: compared as text, one string compare a resource
        two_before = (self.lo - timedelta(days=2)).isoformat()
        object.__setattr__(self, "texts", (self.lo.isoformat(), self.hi.isoformat(), two_before))

    @classmethod
    def of(cls, first: Month, last: Month | None = None) -> Reach:
        """The reach of one month, or of the months `first` to `last` together."""
        return cls(first.first_day - MARGIN, (last or first).next().first_day + MARGIN)

    def search(self) -> tuple[str, str]:
        """The reach as FHIR date-search prefixes (`ge…`, `lt…`), as the panel's searches ask for it."""
        return f"ge{self.texts[0]}", f"lt{self.texts[1]}"


_day_pattern = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}").fullmatch
_DAYS: dict[str, bool] = {}


def _is_day(head: str) -> bool:
    """True for YYYY-MM-DD, the first ten characters of a date/dateTime (digits where digits belong; the
    calendar is the reader's to check). Remembered: it runs twice for every out-of-reach Encounter of a
    population, and a population's dates repeat a few hundred days."""
    known = _DAYS.get(head)
    if known is None:
        if len(_DAYS) > 4096:
            _DAYS.clear()
        known = _DAYS[head] = _day_pattern(head) is not None
    return known


def _long_before(first: str, hours: float, lo: str) -> bool:
    """True when day `first`, a day more and `hours` more end before day `lo` (a length over a day)."""
    if hours != hours or hours > 1e6:  # NaN or absurd: the reader judges the entry
        return False
    try:
        return date.fromisoformat(first) + timedelta(days=1 + hours / 24) < date.fromisoformat(lo)
    except ValueError:  # digits that are no calendar day
        return False


_BILLING_SYSTEMS = (CPT, HCPCS)


def outside(res: dict[str, Any], reach: Reach) -> bool:
    """True for an Encounter the month's verdict does not read: no CPT/HCPCS type, period out of reach.

    Out of reach: it starts on or after the reach's last day, or it has a `period.end` before the reach's
    first day and its `length` (read as hours, the largest unit a length may have) ends before it too.
    Without a `period.end` (an inpatient stay still going on), or with dates that are not YYYY-MM-DD...,
    it is read (and judged by the reader). Written flat: it runs once per Encounter of a population.
    """
    period = res.get("period")
    if type(period) is not dict:
        return False
    start = period.get("start")
    if type(start) is not str or len(start) < 10:
        return False
    first = start[:10]
    lo, hi, lo_less_two = reach.texts
    if first < hi:  # not after the reach: over before it?
        if first >= lo:
            return False
        end = period.get("end")  # without one, an inpatient stay is still going on
        if type(end) is not str or len(end) < 10:
            return False
        last = end[:10]
        if last >= lo or not _is_day(last):
            return False
        length = res.get("length")
        hours = length.get("value") if type(length) is dict else None
        if type(hours) is int or type(hours) is float:
            if hours <= 24:
                if first >= lo_less_two:  # at most a day more, and a day of slack
                    return False
            elif not _long_before(first, hours, lo):  # longer (or NaN: read it)
                return False
    if not _is_day(first):  # not a date: the reader judges (and lists) it
        return False
    types = res.get("type")
    if types is None:
        return True
    if type(types) is not list:
        return False
    try:
        for concept in types:
            for c in concept.get("coding") or () if type(concept) is dict else ():
                if type(c) is dict and canonical_system(c.get("system")) in _BILLING_SYSTEMS:
                    return False  # a visit or billing evidence: read at any date
    except (AttributeError, TypeError):
        return False
    return True


def charge_outside(res: dict[str, Any], reach: Reach) -> bool:
    """True for a ChargeItem whose occurrence lies wholly outside the reach (a service billed in another
    month: the concurrency rules ask only what was billed in the month, cms-rules.md §2). An undated one,
    or one with a date that is not YYYY-MM-DD..., is read (the reader judges it)."""
    when = res.get("occurrenceDateTime")
    if when is not None:
        start = end = when
    else:
        period = res.get("occurrencePeriod")
        if type(period) is not dict:
            return False
        start, end = period.get("start"), period.get("end")
    if type(start) is not str or len(start) < 10:
        return False
    first = start[:10]
    lo, hi, _ = reach.texts
    if first < hi and (
        first >= lo or type(end) is not str or len(end) < 10 or end[:10] >= lo or not _is_day(end[:10])
    ):
        return False
    return _is_day(first)


def attestation_coded(res: dict[str, Any]) -> bool:
    """True for a Task with an attestation code (read at any date, whatever it points at)."""
    code = res.get("code")
    codings = code.get("coding") if type(code) is dict else None
    if type(codings) is not list:
        return False
    for c in codings:  # noqa: SIM110 (a loop, not any(): it runs for every Task of a dropped Encounter)
        if type(c) is dict and c.get("code") in ATTESTATION_KINDS:
            return True
    return False


def unread(resources: Sequence[Any], reach: Reach) -> set[str]:
    """"Type/id" of the Encounters and ChargeItems out of reach and of the Tasks documenting those
    Encounters (read_facts skips them all)."""
    refs = References(resources)
    out = {
        f"Encounter/{r.get('id')}"
        for r in resources
        if isinstance(r, dict) and r.get("resourceType") == "Encounter" and outside(r, reach)
    }
    charges = {
        f"ChargeItem/{r.get('id')}"
        for r in resources
        if isinstance(r, dict) and r.get("resourceType") == "ChargeItem" and charge_outside(r, reach)
    }
    return out | charges | {
        f"Task/{r.get('id')}"
        for r in resources
        if isinstance(r, dict) and r.get("resourceType") == "Task" and r.get("encounter") is not None
        and refs.key(r.get("encounter")) in out and not attestation_coded(r)
    }


class Dropping:
    """`within`'s decision for one resource at a time, remembered by the patient it is about.

    `keep(res, about)` is False for an out-of-reach Encounter (remembered as `about`'s), for a Task of
    `about` documenting an Encounter of `about` dropped before it (not an attestation), and for an
    out-of-reach ChargeItem. A population groups by patient, so what is remembered is per patient: a
    Task is never dropped for another patient's Encounter. A Task kept before its Encounter is dropped
    leaves `about` in `late`; `sweep` then drops it from that patient's resources. `bound`: how many
    Encounters to remember (a stream's memory stays flat; a miss only keeps a Task the reader skips, and
    a bounded Dropping, which forgets, does not sweep). Without a reach everything is kept.
    """

    __slots__ = ("_pending", "bound", "dropped", "late", "reach", "sweeps")

    def __init__(self, reach: Reach | None, bound: int | None = None) -> None:
        self.reach = reach
        self.bound = bound
        self.sweeps = bound is None
        self.dropped: set[tuple[str | None, object]] = set()
        self.late: set[str | None] = set()
        self._pending: set[str | None] = set()  # patients with a kept Task that documents an Encounter

    def keep(self, res: dict[str, Any], about: str | None = None) -> bool:
        reach = self.reach
        if reach is None:
            return True
        rtype = res.get("resourceType")
        if rtype == "Encounter":
            if outside(res, reach):
                if self.bound is not None and len(self.dropped) >= self.bound:
                    self.dropped.clear()
                self.dropped.add((about, f"Encounter/{res.get('id')}"))
                if about in self._pending:
                    self.late.add(about)
                return False
        elif rtype == "Task":
            ref = res.get("encounter")
            if type(ref) is dict:
                dropped = self.dropped
                if dropped and (about, ref.get("reference")) in dropped:
                    if not attestation_coded(res):
                        return False
                elif self.sweeps:
                    self._pending.add(about)
        elif rtype == "ChargeItem":
            return not charge_outside(res, reach)
        return True

    def mark(self, about: str | None, encounter: str) -> None:
        """`about`'s Encounter `encounter` ("Encounter/<id>") was dropped before it got here (unparsed)."""
        self.dropped.add((about, encounter))
        if about in self._pending:
            self.late.add(about)

    def sweep(self, about: str | None, resources: list[Any]) -> list[Any]:
        """`about`'s resources less the Tasks documenting its Encounters dropped after them."""
        if about not in self.late:
            return resources
        return [r for r in resources if not self._dropped_task(about, r)]

    def _dropped_task(self, about: str | None, res: Any) -> bool:
        if type(res) is not dict or res.get("resourceType") != "Task":
            return False
        ref = res.get("encounter")
        return (
            type(ref) is dict and (about, ref.get("reference")) in self.dropped and not attestation_coded(res)
        )


def within(resources: Iterable[Any], reach: Reach) -> Iterator[Any]:
    """`resources` less what read_facts would not read with `reach`, dropped as soon as they are parsed.

    An out-of-reach Encounter or ChargeItem is dropped, and so is a Task documenting an Encounter dropped
    before it (not an attestation); a Task seen before its Encounter is passed on, and read_facts skips
    it. The dropped ids are bounded: a Task follows its Encounter closely, and a miss only passes it on.
    (Deciding from an NDJSON line's bytes, before parsing, was tried twice: the scans a safe decision
    needs cost two to three times orjson's parse of the line.)
    """
    keep = Dropping(reach, bound=8192).keep  # a local: this loop runs once per resource
    for res in resources:
        if type(res) is not dict or res.get("resourceType") not in _JUDGED or keep(res):
            yield res


_JUDGED = frozenset({"Encounter", "Task", "ChargeItem"})  # the types Dropping can drop
