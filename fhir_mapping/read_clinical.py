"""Patient, Condition, CarePlan (and the Communication that shares a plan) as domain records."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fhir_mapping.codes import (
    CARE_PROGRAM,
    CONDITION_CLINICAL,
    CONDITION_VER_STATUS,
    EXT_CARE_PLAN_REVIEWED,
    canonical_system,
    codes_in,
    codings,
)
from fhir_mapping.dates import BadDate, parse_birth_date, parse_when
from fhir_mapping.reading import ReadContext, Unreadable
from rules.records import CarePlanRecord, ConditionRecord, PatientRecord


def _first_code(concept: Any, system: str | None = None) -> str | None:
    """The status code of a CodeableConcept: the HL7 system's coding first, then any coding, then text."""
    if not isinstance(concept, dict):
        return None
    found = concept.get("coding") or ()
    if system is not None:
        preferred = [c for c in found if isinstance(c, dict) and canonical_system(c.get("system")) == system]
        found = [*preferred, *(c for c in found if c not in preferred)]
    for c in found:
        if not isinstance(c, dict):
            continue
        code = c.get("code")
        if isinstance(code, str) and code:
            return code.strip().lower()
    text = concept.get("text")
    return text.strip().lower() if isinstance(text, str) and text.strip() else None


def human_name(names: Any) -> str:
    """A display name from HumanName[] (official first, then usual/unspecified, then the rest); "" if none."""
    if not isinstance(names, list):
        return ""
    usable = [n for n in names if isinstance(n, dict)]
    usable.sort(
        key=lambda n: 0 if n.get("use") == "official" else 1 if n.get("use") in (None, "usual") else 2
    )
    for n in usable:
        own = n.get("text")
        if isinstance(own, str) and own.strip():
            return own.strip()
        raw_given = n.get("given")
        if isinstance(raw_given, str):
            raw_given = [raw_given]
        given = [g for g in raw_given if isinstance(g, str)] if isinstance(raw_given, list) else []
        family = n.get("family")
        text = " ".join([*given, family if isinstance(family, str) else ""]).strip()
        if text:
            return text
    return ""


def read_patient(res: dict[str, Any], key: str, ctx: ReadContext) -> PatientRecord:
    deceased_at = parse_when(res.get("deceasedDateTime"), ctx.tz, field="deceasedDateTime")
    flag = res.get("deceasedBoolean")
    if flag is not None and not isinstance(flag, bool):
        raise Unreadable("Patient.deceasedBoolean is not true/false")
    gps = tuple(k for k in (ctx.people.key(r, res) for r in res.get("generalPractitioner") or ()) if k)
    return PatientRecord(
        id=key,
        name=human_name(res.get("name")),
        birth_date=parse_birth_date(res.get("birthDate")),
        deceased=bool(flag) or deceased_at is not None,
        deceased_at=deceased_at,
        general_practitioners=gps,
    )


def _onset(res: dict[str, Any], prefix: str, ctx: ReadContext) -> datetime | None:
    value = res.get(f"{prefix}DateTime")
    if value is not None:
        return parse_when(value, ctx.tz, field=f"{prefix}DateTime")
    period = res.get(f"{prefix}Period")
    if isinstance(period, dict):
        return parse_when(period.get("start") or period.get("end"), ctx.tz, field=f"{prefix}Period")
    return None


def _recorded(res: dict[str, Any], ctx: ReadContext) -> datetime | None:
    try:
        return parse_when(res.get("recordedDate"), ctx.tz, field="recordedDate")
    except BadDate:
        return None  # an unreadable recordedDate says nothing


CATEGORY_SYSTEMS = frozenset(
    {
        "http://terminology.hl7.org/CodeSystem/condition-category",
        "http://hl7.org/fhir/us/core/CodeSystem/condition-category",
    }
)
_YEARS = {"a": 1.0, "yr": 1.0, "year": 1.0, "years": 1.0, "mo": 1 / 12, "month": 1 / 12, "months": 1 / 12,
          "wk": 7 / 365.25, "week": 7 / 365.25, "weeks": 7 / 365.25, "d": 1 / 365.25, "day": 1 / 365.25,
          "days": 1 / 365.25}


def _categories(value: Any) -> tuple[str, ...]:
    """HL7 / US Core condition-category codes (local categories are not read)."""
    if not isinstance(value, list):
        return ()
    out: list[str] = []
    for concept in value:
        for c in concept.get("coding") or () if isinstance(concept, dict) else ():
            code = c.get("code") if isinstance(c, dict) else None
            if isinstance(code, str) and canonical_system(c.get("system")) in CATEGORY_SYSTEMS:
                out.append(code.strip().lower())
    return tuple(out)


def abatement_age(res: dict[str, Any]) -> float | None:
    """Years of age at abatement from `abatementAge` or `abatementRange` (low, else high); None if none."""
    age = res.get("abatementAge")
    if not isinstance(age, dict):
        rng = res.get("abatementRange")
        age = (rng.get("low") or rng.get("high")) if isinstance(rng, dict) else None
    if not isinstance(age, dict):
        return None
    value = age.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    unit = str(age.get("code") or age.get("unit") or "a").strip().lower()
    return float(value) * _YEARS.get(unit, 1.0)


def abated_without_date(res: dict[str, Any]) -> bool:
    """abatementString, abatementBoolean true, or an age/range: abated, date not (yet) known."""
    text = res.get("abatementString")
    return (
        (isinstance(text, str) and bool(text.strip()))
        or res.get("abatementBoolean") is True
        or abatement_age(res) is not None
    )


def read_condition(res: dict[str, Any], key: str, ctx: ReadContext) -> ConditionRecord:
    code = res.get("code")
    if code is None:
        raise Unreadable("Condition has no code")
    if not isinstance(code, dict):
        raise Unreadable("Condition.code is not a CodeableConcept")
    found = codings(code)
    text = code.get("text") if isinstance(code.get("text"), str) else ""
    abatement = _onset(res, "abatement", ctx)
    if not found and not text:
        raise Unreadable("Condition.code has neither a coding nor text")
    onset = _onset(res, "onset", ctx)
    return ConditionRecord(
        id=key,
        codings=found,
        text=text or (found[0].display if found else ""),
        clinical_status=_first_code(res.get("clinicalStatus"), CONDITION_CLINICAL),
        verification_status=_first_code(res.get("verificationStatus"), CONDITION_VER_STATUS),
        onset=onset,
        recorded=_recorded(res, ctx) if onset is None else None,
        abatement=abatement,
        abated=abatement is not None or abated_without_date(res),
        categories=_categories(res.get("category")),
    )


def read_care_plan(res: dict[str, Any], key: str, ctx: ReadContext) -> CarePlanRecord:
    status = res.get("status")
    if not isinstance(status, str) or not status:
        raise Unreadable("CarePlan has no status")
    period = res.get("period") or {}
    if not isinstance(period, dict):
        raise Unreadable("CarePlan.period is not a Period")
    reviewed = None
    for ext in res.get("extension") or ():
        if isinstance(ext, dict) and ext.get("url") == EXT_CARE_PLAN_REVIEWED:
            when = parse_when(ext.get("valueDateTime"), ctx.tz, field="care-plan-reviewed")
            if when and (reviewed is None or when > reviewed):
                reviewed = when
    if reviewed is None:
        meta = res.get("meta")
        if isinstance(meta, dict):
            reviewed = parse_when(meta.get("lastUpdated"), ctx.tz, field="meta.lastUpdated")
    author = ctx.people.key(res.get("author"), res) if res.get("author") else None
    intent = res.get("intent")
    return CarePlanRecord(
        id=key,
        status=status,
        intent=intent.strip().lower() if isinstance(intent, str) else "",
        programs=tuple(dict.fromkeys(codes_in(res.get("category"), CARE_PROGRAM))),
        period_start=parse_when(period.get("start"), ctx.tz, field="CarePlan.period.start"),
        period_end=parse_when(period.get("end"), ctx.tz, end=True, field="CarePlan.period.end"),
        created=parse_when(res.get("created"), ctx.tz, field="CarePlan.created"),
        author=author,
        last_reviewed=reviewed,
    )


def plan_shared_at(res: dict[str, Any], ctx: ReadContext) -> tuple[list[str], datetime | None]:
    """For a completed Communication: the CarePlans it is about and when it was sent."""
    if res.get("status") != "completed":
        return [], None
    plans = [k for k in (ctx.refs.key(a) for a in res.get("about") or ()) if k and k.startswith("CarePlan/")]
    if not plans:
        return [], None
    when = parse_when(res.get("sent") or res.get("received"), ctx.tz, field="Communication.sent")
    return plans, when
