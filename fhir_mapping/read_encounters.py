"""Encounters: logged care-management time, initiating-visit candidates, inpatient stays.

One Encounter is read as
- a time entry when its `type` carries a care-program code (ccm, pcm, rpm, ...);
- an inpatient stay when its `class` is IMP, ACUTE or NONAC (v3 ActCode), or I (v2 patient class);
- a visit candidate when its `type` carries a CPT or HCPCS code (the rules decide which codes qualify);
- a visit (never an initiating one) when it is finished and its `class` is an in-person one (AMB, HH,
  EMER, FLD), whatever its type but a telephone, indirect or telemedicine one: CCM time inside it is the
  visit's own.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fhir_mapping.codes import (
    CARE_PROGRAM,
    CPT,
    FACE_TO_FACE_CLASSES,
    HCPCS,
    INPATIENT_CLASSES,
    NOT_FACE_TO_FACE_TYPES,
    SNOMED,
    canonical_system,
    codings,
)
from fhir_mapping.dates import (
    BadDate,
    duration_minutes,
    elapsed_minutes,
    is_date_only,
    parse_when,
    plus_minutes,
)
from fhir_mapping.reading import ReadContext, Unreadable
from rules.people import is_staff
from rules.records import PROGRAMS, Coding, InpatientStay, TimeEntry, VisitRecord

_NOT_HAPPENED = frozenset({"entered-in-error", "cancelled", "planned"})


class TimeDraft:
    """A time entry before its Tasks are attached (a plain slotted class: one is built per time entry)."""

    __slots__ = (
        "activities", "codings", "end", "id", "minutes", "notes", "performer", "program", "start", "status",
        "task_ids",
    )

    def __init__(
        self,
        id: str,
        status: str,
        program: str,
        start: datetime,
        end: datetime,
        minutes: float,
        performer: str | None,
        codings: tuple[Coding, ...] = (),
    ) -> None:
        self.id = id
        self.status = status
        self.program = program
        self.start = start
        self.end = end
        self.minutes = minutes
        self.performer = performer
        self.codings = codings
        self.notes: list[str] = []
        self.activities: list[Coding] = []
        self.task_ids: list[str] = []

    def build(self) -> TimeEntry:
        return TimeEntry(
            self.id, self.status, self.program, self.start, self.end, self.minutes, self.performer,
            tuple(self.notes), tuple(self.activities), tuple(self.task_ids), self.codings,
        )


def _class_codes(value: Any) -> list[str]:
    if isinstance(value, dict):  # R4: a Coding
        code = value.get("code")
        return [code] if isinstance(code, str) else []
    if isinstance(value, list):  # R5 / odd servers: CodeableConcepts
        return [c.code for c in codings(value)]
    return []


def _program(types: Any, service_type: Any = None) -> str | None:
    """The care program of a time entry, from `type` and `serviceType`. When several are named, another
    program wins over CCM: time that is also tagged TCM, RPM, RTM or BHI never counts for CCM."""
    found: str | None = None
    for concept in (*types, service_type) if service_type is not None else types:
        for c in concept.get("coding") or () if isinstance(concept, dict) else ():
            code = c.get("code") if isinstance(c, dict) else None
            if code in PROGRAMS and canonical_system(c.get("system")) == CARE_PROGRAM:
                if code != "ccm":
                    return str(code)
                found = "ccm"
    return found


def performer_of(res: dict[str, Any], ctx: ReadContext) -> str | None:
    fallback = None
    key_of = ctx.people.key
    for p in res.get("participant") or ():
        key = key_of(p.get("individual") or p.get("actor"), res)
        if key is None:
            continue
        if is_staff(key):
            return key
        fallback = fallback or key
    return fallback


def _participants(res: dict[str, Any], ctx: ReadContext) -> tuple[str, ...]:
    keys = (ctx.people.key(p.get("individual") or p.get("actor"), res) for p in res.get("participant") or ())
    return tuple(k for k in keys if k)


def read_encounter(
    res: dict[str, Any], key: str, ctx: ReadContext
) -> TimeDraft | VisitRecord | InpatientStay | None:
    """The record this Encounter stands for, None when it is none of ours; Unreadable if unusable."""
    types = res.get("type")
    if types is None:
        types = []
    elif not isinstance(types, list):
        raise Unreadable("Encounter.type is not a list")
    program = _program(types, res.get("serviceType"))
    if program is not None:
        return _time_entry(res, key, ctx, program)
    status = res.get("status")
    if set(_class_codes(res.get("class"))) & INPATIENT_CLASSES:
        if status in _NOT_HAPPENED:
            return None
        period = _period(res)
        return InpatientStay(
            id=key,
            start=parse_when(period.get("start"), ctx.tz, field="Encounter.period.start"),
            end=parse_when(period.get("end"), ctx.tz, end=True, field="Encounter.period.end"),
        )
    found = codings(types)
    if any(c.system in (CPT, HCPCS) for c in found):
        start, end = _visit_span(res, ctx)
        if start is None:
            raise Unreadable("visit Encounter has no period.start")
        if not isinstance(status, str):
            raise Unreadable("visit Encounter has no status")
        return VisitRecord(key, status, found, start, end, _participants(res, ctx))
    if (
        status == "finished"
        and set(_class_codes(res.get("class"))) & FACE_TO_FACE_CLASSES
        and not any(c.system == SNOMED and c.code in NOT_FACE_TO_FACE_TYPES for c in found)
    ):
        # A visit typed without CPT/HCPCS (SNOMED, local codes, none): never an initiating visit, but
        # time logged inside it is the visit's own (cms-rules.md §3.6).
        start, end = _visit_span(res, ctx)
        return VisitRecord(key, status, found, start, end, _participants(res, ctx)) if start else None
    return None


def _visit_span(res: dict[str, Any], ctx: ReadContext) -> tuple[datetime | None, datetime | None]:
    """A visit's start and end; without a `period.end`, start + `length` (when both are given)."""
    period = _period(res)
    start = parse_when(period.get("start"), ctx.tz, field="Encounter.period.start")
    end = parse_when(period.get("end"), ctx.tz, end=True, field="Encounter.period.end")
    if end is None and start is not None and not is_date_only(period.get("start")):
        try:
            minutes = duration_minutes(res.get("length"))
        except BadDate:
            minutes = None
        if minutes is not None:
            end = plus_minutes(start, minutes)
    return start, end


def _period(res: dict[str, Any]) -> dict[str, Any]:
    period = res.get("period")
    if period is None:
        return {}
    if not isinstance(period, dict):
        raise Unreadable("Encounter.period is not a Period")
    return period


def _time_entry(res: dict[str, Any], key: str, ctx: ReadContext, program: str) -> TimeDraft:
    status = res.get("status")
    if not isinstance(status, str) or not status:
        raise Unreadable("time-entry Encounter has no status")
    period = _period(res)
    raw_start, raw_end = period.get("start"), period.get("end")
    start = parse_when(raw_start, ctx.tz, field="Encounter.period.start")
    if start is None:
        raise Unreadable("time-entry Encounter has no period.start")
    try:
        minutes = duration_minutes(res.get("length"))
    except BadDate as exc:
        raise Unreadable(f"time-entry Encounter: {exc}") from None
    end = parse_when(raw_end, ctx.tz, field="Encounter.period.end") if raw_end else None
    if minutes is None:
        if end is None:
            raise Unreadable("time-entry Encounter has neither length nor period.end")
        if is_date_only(raw_start) or is_date_only(raw_end):
            raise Unreadable("time-entry Encounter period has dates without times and no length")
        minutes = elapsed_minutes(start, end)
        if minutes < 0:
            raise Unreadable("time-entry Encounter period ends before it starts")
    elif end is None or end < start:
        end = plus_minutes(start, minutes)
    elif end > start and not is_date_only(raw_end):
        # `length` is the time the encounter lasted within its period (FHIR: less time absent), never more.
        minutes = min(minutes, elapsed_minutes(start, end))
    types = res.get("type") or []
    n = 0  # codings in `type`: with more than the program's, CPT/HCPCS codes may say which program
    for t in types:
        if isinstance(t, dict):
            n += len(t.get("coding") or ())
    billing = tuple(c for c in codings(types) if c.system in (CPT, HCPCS)) if n > 1 else ()
    return TimeDraft(key, status, program, start, end, minutes, performer_of(res, ctx), billing)
