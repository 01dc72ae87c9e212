"""Hand-written builders of PatientFacts for rule tests (no FHIR, no I/O).

`ready_facts()` is a patient-month that is billable in March 2026 (UTC) with 25 staff minutes; every test
changes one thing about it. `FakeClassifier` stands in for rules.chronic.classify with a small table.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from rules.records import (
    Attestation,
    BilledService,
    CarePlanRecord,
    Coding,
    ConditionRecord,
    ConsentRecord,
    InpatientStay,
    PatientFacts,
    PatientRecord,
    TimeEntry,
    VisitRecord,
)

ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
SNOMED = "http://snomed.info/sct"
CPT = "http://www.ama-assn.org/go/cpt"
DOC = "Practitioner/doc"
OTHER_DOC = "Practitioner/other-doc"
NURSE = "Practitioner/nurse"
NURSE2 = "Practitioner/nurse2"
ALL_DISCLOSURES = frozenset({"ccm-available", "cost-sharing", "one-practitioner", "right-to-stop"})
GOOD_NOTE = (
    "Reviewed home BP log 150s/90s for hypertension; increased lisinopril to 20 mg; recheck readings Friday."
)


@dataclass(frozen=True)
class FakeClassification:
    chronic: bool
    source: str | None
    condition_key: str | None
    condition_label: str
    display: str
    reason: str


# code (without dot) -> (condition key, label); anything else is "not chronic".
CHRONIC_TABLE: dict[str, tuple[str, str]] = {
    "E119": ("diabetes", "Diabetes"),
    "E1165": ("diabetes", "Diabetes"),
    "I10": ("hypertension", "Hypertension"),
    "I509": ("heart-failure", "Heart failure"),
    "J449": ("copd", "COPD"),
    "44054006": ("diabetes", "Diabetes"),
    "38341003": ("hypertension", "Hypertension"),
}


class FakeClassifier:
    """A table-driven stand-in for rules.chronic.classify; records every coding it was asked about."""

    def __init__(self, table: dict[str, tuple[str, str]] | None = None) -> None:
        self.table = CHRONIC_TABLE if table is None else table
        self.calls: list[Coding] = []

    def __call__(self, coding: Coding) -> FakeClassification:
        self.calls.append(coding)
        hit = self.table.get(coding.code.replace(".", "").upper())
        if hit is None:
            return FakeClassification(
                False, None, None, "", coding.display or coding.code, "not in any chronic list"
            )
        return FakeClassification(
            True, "CCIR", hit[0], hit[1], coding.display or coding.code, "CCIR: chronic"
        )


def at(text: str) -> datetime:
    """An aware datetime from ISO text; a bare date-time is read as UTC."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def condition(cid: str, code: str, system: str = ICD10, **kw: Any) -> ConditionRecord:
    kw.setdefault("clinical_status", "active")
    return ConditionRecord(id=f"Condition/{cid}", codings=(Coding(system, code, code),), **kw)


def entry(
    eid: str,
    start: str,
    minutes: float,
    performer: str | None = NURSE,
    program: str = "ccm",
    status: str = "finished",
    notes: tuple[str, ...] = (GOOD_NOTE,),
) -> TimeEntry:
    s = at(start)
    return TimeEntry(
        id=f"Encounter/{eid}",
        status=status,
        program=program,
        start=s,
        end=s + timedelta(minutes=minutes),
        minutes=minutes,
        performer=performer,
        notes=notes,
        task_ids=(f"Task/{eid}-t",) if notes else (),
    )


def consent(
    cid: str = "c1",
    obtained: str = "2026-01-05T10:00:00+00:00",
    status: str = "active",
    practitioner: str | None = DOC,
    stop: str | None = None,
    disclosures: frozenset[str] = ALL_DISCLOSURES,
) -> ConsentRecord:
    return ConsentRecord(
        id=f"Consent/{cid}",
        status=status,
        obtained_at=at(obtained) if obtained else None,
        billing_practitioner=practitioner,
        obtained_by=NURSE,
        stop_date=at(stop) if stop else None,
        method="verbal",
        disclosures=disclosures,
    )


def care_plan(
    pid: str = "cp1", start: str = "2026-01-05T00:00:00+00:00", end: str | None = None, status: str = "active"
) -> CarePlanRecord:
    return CarePlanRecord(
        id=f"CarePlan/{pid}",
        status=status,
        programs=("ccm",),
        period_start=at(start),
        period_end=at(end) if end else None,
        author=DOC,
        shared_with_patient_at=at(start),
    )


def visit(
    vid: str = "v1",
    start: str = "2025-12-10T15:00:00+00:00",
    code: str = "99214",
    participants: tuple[str, ...] = (DOC,),
) -> VisitRecord:
    s = at(start)
    return VisitRecord(
        id=f"Encounter/{vid}",
        status="finished",
        codings=(Coding(CPT, code),),
        start=s,
        end=s + timedelta(minutes=25),
        participants=participants,
    )


def attestation(
    kind: str = "risk-attestation",
    when: str = "2026-01-05T10:30:00+00:00",
    practitioner: str | None = DOC,
    aid: str | None = None,
) -> Attestation:
    return Attestation(id=f"Task/{aid or kind}", kind=kind, practitioner=practitioner, at=at(when))


def charge(
    cid: str,
    code: str,
    when: str = "2026-03-10T12:00:00+00:00",
    performer: str | None = OTHER_DOC,
    status: str = "billed",
) -> BilledService:
    w = at(when)
    return BilledService(
        id=f"ChargeItem/{cid}", code=code, status=status, start=w, end=w, performer=performer
    )


def stay(sid: str, start: str, end: str | None) -> InpatientStay:
    return InpatientStay(id=f"Encounter/{sid}", start=at(start), end=at(end) if end else None)


def ready_facts(**changes: Any) -> PatientFacts:
    """Billable in 2026-03 (UTC): 2 chronic conditions, consent, plan, visit, attestation, 25 staff min."""
    facts = PatientFacts(
        patient=PatientRecord(id="Patient/p1", general_practitioners=(DOC,)),
        conditions=(condition("dm", "E11.9"), condition("htn", "I10")),
        consents=(consent(),),
        care_plans=(care_plan(),),
        visits=(visit(),),
        time_entries=(entry("e1", "2026-03-03T14:00:00+00:00", 25),),
        attestations=(attestation(),),
    )
    return replace(facts, **changes)


def with_entries(facts: PatientFacts, *entries: TimeEntry) -> PatientFacts:
    return replace(facts, time_entries=tuple(entries))


def add(facts: PatientFacts, **more: Any) -> PatientFacts:
    """Append records to the named tuple fields of `facts`."""
    return replace(facts, **{k: tuple(getattr(facts, k)) + tuple(v) for k, v in more.items()})


def ev(facts: PatientFacts, month: str = "2026-03", **kw: Any):
    """evaluate() with the fake classifier unless the test passes its own."""
    from rules.evaluate import evaluate

    kw.setdefault("classifier", FakeClassifier())
    return evaluate(facts, month, **kw)


def rules_of(verdict: Any, severity: str | None = None) -> set[str]:
    return {f.rule for f in verdict.findings if severity is None or f.severity == severity}


def finding(verdict: Any, rule: str) -> Any:
    hits = [f for f in verdict.findings if f.rule == rule]
    assert len(hits) == 1, f"expected one {rule}, got {[f.rule for f in verdict.findings]}"
    return hits[0]


def codes_of(verdict: Any) -> list[tuple[str, int]]:
    return [(c.code, c.units) for c in verdict.codes]
