"""Patient, Condition, CarePlan (and the Communication that shares a plan) as domain records."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fhir_mapping.codes import CARE_PROGRAM, EXT_CARE_PLAN_REVIEWED, codes_in, codings
from fhir_mapping.dates import parse_birth_date, parse_when
from fhir_mapping.reading import ReadContext, Unreadable
from rules.records import CarePlanRecord, ConditionRecord, PatientRecord


def _first_code(concept: Any) -> str | None:
    if not isinstance(concept, dict):
        return None
    for c in concept.get("coding") or ():
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
        if isinstance(n.get("text"), str) and n["text"].strip():
            return n["text"].strip()
        raw_given = n.get("given")
        if isinstance(raw_given, str):
            raw_given = [raw_given]
        given = [g for g in raw_given if isinstance(g, str)] if isinstance(raw_given, list) else []
        family = n.get("family") if isinstance(n.get("family"), str) else ""
        text = " ".join([*given, family]).strip()
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


def read_condition(res: dict[str, Any], key: str, ctx: ReadContext) -> ConditionRecord:
    code = res.get("code")
    if code is None:
        raise Unreadable("Condition has no code")
    if not isinstance(code, dict):
        raise Unreadable("Condition.code is not a CodeableConcept")
    found = codings(code)
    text = code.get("text") if isinstance(code.get("text"), str) else ""
    if not found and not text:
        raise Unreadable("Condition.code has neither a coding nor text")
    return ConditionRecord(
        id=key,
        codings=found,
        text=text or (found[0].display if found else ""),
        clinical_status=_first_code(res.get("clinicalStatus")),
        verification_status=_first_code(res.get("verificationStatus")),
        onset=_onset(res, "onset", ctx),
        abatement=_onset(res, "abatement", ctx),
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
    return CarePlanRecord(
        id=key,
        status=status,
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
