"""Write the golden scenarios: tests/data/scenarios/<name>.json (+ <name>.expected.json).

Each scenario is one patient-month as a FHIR R4 collection Bundle in the shapes of
docs/fhir-conventions.md, and an expected file with the status, codes, counted minutes and the
rule ids that must (and must not) appear. Run `python tests/data/make_scenarios.py` after
changing a scenario; the JSON files are committed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "scenarios"

CARE_PROGRAM = "https://ccm-ready.org/fhir/CodeSystem/care-program"
CARE_ACTIVITY = "https://ccm-ready.org/fhir/CodeSystem/care-activity"
DISCLOSURE_SYSTEM = "https://ccm-ready.org/fhir/CodeSystem/ccm-disclosure"
DISCLOSURE_EXT = "https://ccm-ready.org/fhir/StructureDefinition/ccm-disclosure"
METHOD_EXT = "https://ccm-ready.org/fhir/StructureDefinition/consent-method"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
CPT = "http://www.ama-assn.org/go/cpt"
HCPCS = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
ALL_DISCLOSURES = ("ccm-available", "cost-sharing", "one-practitioner", "right-to-stop")

PATIENT = "Patient/p1"
DR_A = "Practitioner/dr-a"  # the billing practitioner
DR_B = "Practitioner/dr-b"  # another practitioner
RN = "Practitioner/rn-1"  # clinical staff
RN2 = "Practitioner/rn-2"

GOOD_NOTE = (
    "Phone call with patient: reviewed home glucose log (fasting 140-160), reinforced insulin titration per "
    "care plan, reconciled medications after pharmacy change, scheduled retinal exam."
)


def ref(key: str) -> dict[str, str]:
    return {"reference": key}


def concept(system: str, code: str, display: str = "") -> dict[str, Any]:
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding]}


@dataclass
class Scenario:
    name: str
    description: str
    month: str = "2026-10"
    timezone: str = "UTC"
    billing_practitioner: str | None = None
    resources: list[Any] = field(default_factory=list)
    expected: dict[str, Any] = field(default_factory=dict)

    def add(self, *items: Any) -> Scenario:
        self.resources.extend(items)
        return self

    def drop(self, key: str) -> Scenario:
        self.resources = [
            r for r in self.resources if not (isinstance(r, dict) and f"{r['resourceType']}/{r['id']}" == key)
        ]
        return self

    def bundle(self) -> dict[str, Any]:
        entries = []
        for r in self.resources:
            if isinstance(r, dict) and "resourceType" in r and "id" in r:
                entries.append(
                    {"fullUrl": f"https://ehr.example/fhir/{r['resourceType']}/{r['id']}", "resource": r}
                )
            else:
                entries.append(r)  # deliberately malformed entries
        return {"resourceType": "Bundle", "id": self.name, "type": "collection", "entry": entries}


# ---- resource builders ---------------------------------------------------------------------------


def patient(*, deceased: str | bool | None = None, gp: str | None = DR_A) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Patient",
        "id": "p1",
        "name": [{"family": "Testcase", "given": ["Golden"]}],
        "birthDate": "1950-04-12",
        "gender": "female",
    }
    if gp:
        res["generalPractitioner"] = [ref(gp)]
    if isinstance(deceased, bool):
        res["deceasedBoolean"] = deceased
    elif deceased:
        res["deceasedDateTime"] = deceased
    return res


def condition(
    cid: str, code: str, display: str, *, system: str = ICD10, status: str = "active"
) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": cid,
        "clinicalStatus": concept("http://terminology.hl7.org/CodeSystem/condition-clinical", status),
        "verificationStatus": concept(
            "http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed"
        ),
        "code": {**concept(system, code, display), "text": display},
        "subject": ref(PATIENT),
        "onsetDateTime": "2019-03-01",
    }


def consent(
    *,
    status: str = "active",
    when: str = "2026-06-10T15:00:00Z",
    billing: str | None = DR_A,
    disclosures: tuple[str, ...] = ALL_DISCLOSURES,
    stop: str | None = None,
    cid: str = "consent-1",
) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Consent",
        "id": cid,
        "status": status,
        "extension": [{"url": METHOD_EXT, "valueCode": "verbal"}]
        + [
            {"url": DISCLOSURE_EXT, "valueCoding": {"system": DISCLOSURE_SYSTEM, "code": d}}
            for d in disclosures
        ],
        "scope": concept("http://terminology.hl7.org/CodeSystem/consentscope", "treatment"),
        "category": [concept("http://loinc.org", "59284-0", "Patient Consent"), concept(CARE_PROGRAM, "ccm")],
        "patient": ref(PATIENT),
        "dateTime": when,
        "performer": [ref(RN)],
        "policyRule": concept("http://terminology.hl7.org/CodeSystem/v3-ActCode", "OPTIN"),
        "provision": {"type": "permit"},
    }
    if billing:
        res["provision"]["actor"] = [{"role": concept(PARTICIPATION, "PPRF"), "reference": ref(billing)}]
    if stop:
        res["provision"]["period"] = {"start": when[:10], "end": stop}
    return res


def care_plan(*, status: str = "active", start: str = "2026-06-10", end: str | None = None) -> dict[str, Any]:
    period = {"start": start, **({"end": end} if end else {})}
    return {
        "resourceType": "CarePlan",
        "id": "plan-1",
        "status": status,
        "intent": "plan",
        "category": [concept(CARE_PROGRAM, "ccm")],
        "title": "Comprehensive CCM care plan",
        "subject": ref(PATIENT),
        "period": period,
        "created": start,
        "author": ref(DR_A),
    }


def plan_shared() -> dict[str, Any]:
    return {
        "resourceType": "Communication",
        "id": "plan-shared-1",
        "status": "completed",
        "subject": ref(PATIENT),
        "about": [ref("CarePlan/plan-1")],
        "recipient": [ref(PATIENT)],
        "sent": "2026-06-11T10:00:00Z",
        "sender": ref(RN),
    }


def visit(
    *,
    vid: str = "visit-1",
    code: str = "99214",
    system: str = CPT,
    when: str = "2026-06-10T14:00:00Z",
    who: str = DR_A,
    status: str = "finished",
) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "id": vid,
        "status": status,
        "class": {"system": ACT_CODE, "code": "AMB"},
        "type": [concept(system, code)],
        "subject": ref(PATIENT),
        "participant": [{"individual": ref(who)}],
        "period": {"start": when, "end": when.replace(":00:00", ":30:00")},
    }


def attestation(
    kind: str, *, tid: str | None = None, when: str = "2026-10-02T16:00:00Z", who: str = DR_A
) -> dict[str, Any]:
    return {
        "resourceType": "Task",
        "id": tid or f"attest-{kind}",
        "status": "completed",
        "intent": "order",
        "code": concept(CARE_ACTIVITY, kind),
        "for": ref(PATIENT),
        "owner": ref(who),
        "executionPeriod": {"start": when, "end": when},
        "authoredOn": when,
    }


def inpatient(*, start: str, end: str | None) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "id": "stay-1",
        "status": "finished" if end else "in-progress",
        "class": {"system": ACT_CODE, "code": "IMP"},
        "subject": ref(PATIENT),
        "period": {"start": start, **({"end": end} if end else {})},
    }


def charge(
    cid: str, code: str, *, who: str = DR_B, when: str = "2026-10-20", system: str = CPT, units: int = 1
) -> dict[str, Any]:
    return {
        "resourceType": "ChargeItem",
        "id": cid,
        "status": "billed",
        "code": concept(system, code),
        "subject": ref(PATIENT),
        "occurrenceDateTime": when,
        "performer": [{"actor": ref(who)}],
        "quantity": {"value": units},
    }


def entry(
    eid: str,
    start: str,
    minutes: int,
    *,
    who: str = RN,
    program: str = "ccm",
    note: str | None = GOOD_NOTE,
    status: str = "finished",
    use_length: bool = True,
) -> list[dict[str, Any]]:
    """A time-entry Encounter and (unless note is None) the completed Task documenting it."""
    begin = datetime.fromisoformat(start)
    end = (begin + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")
    enc: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": eid,
        "status": status,
        "class": {"system": ACT_CODE, "code": "VR"},
        "type": [concept(CARE_PROGRAM, program)],
        "subject": ref(PATIENT),
        "participant": [{"individual": ref(who)}],
        "period": {"start": start, "end": end},
    }
    if use_length:
        enc["length"] = {
            "value": minutes,
            "unit": "min",
            "system": "http://unitsofmeasure.org",
            "code": "min",
        }
    out = [enc]
    if note is not None:
        out.append(
            {
                "resourceType": "Task",
                "id": f"task-{eid}",
                "status": "completed",
                "intent": "order",
                "code": concept(CARE_ACTIVITY, "care-coordination"),
                "for": ref(PATIENT),
                "encounter": ref(f"Encounter/{eid}"),
                "owner": ref(who),
                "executionPeriod": {"start": start, "end": end},
                "note": [{"text": note}],
            }
        )
    return out


def base(name: str, description: str, *, minutes: tuple[int, ...] = (25,), **kwargs: Any) -> Scenario:
    """A complete, billable CCM patient-month with staff entries of `minutes` each."""
    s = Scenario(name, description, **kwargs)
    s.add(
        patient(),
        {"resourceType": "Practitioner", "id": "dr-a", "name": [{"family": "Alpha"}]},
        {"resourceType": "Practitioner", "id": "rn-1", "name": [{"family": "Nurse"}]},
        condition("c-dm", "E11.9", "Type 2 diabetes mellitus without complications"),
        condition("c-hf", "I50.9", "Heart failure, unspecified"),
        condition("c-copd", "J44.9", "Chronic obstructive pulmonary disease, unspecified"),
        attestation("risk-attestation", when="2026-06-10T15:05:00Z"),
        consent(),
        care_plan(),
        plan_shared(),
        visit(),
    )
    for i, m in enumerate(minutes, start=1):
        s.add(*entry(f"te-{i}", f"2026-10-{2 + 3 * i:02d}T14:00:00+00:00", m))
    return s


def expect(
    s: Scenario,
    status: str,
    codes: dict[str, int],
    staff: int,
    practitioner: int = 0,
    rules: tuple[str, ...] = (),
    absent: tuple[str, ...] = (),
    **extra: Any,
) -> Scenario:
    s.expected = {
        "description": s.description,
        "month": s.month,
        "timezone": s.timezone,
        "billing_practitioner": s.billing_practitioner,
        "status": status,
        "codes": [{"code": c, "units": u} for c, u in codes.items()],
        "minutes": {"clinical_staff": staff, "billing_practitioner": practitioner},
        "rules": sorted(rules),
        "absent_rules": sorted(absent),
        **extra,
    }
    return s


# ---- the scenarios ------------------------------------------------------------------------------


def scenarios() -> list[Scenario]:
    out: list[Scenario] = []
    add = out.append

    add(
        expect(
            base("ready-99490", "Complete record, 25 staff minutes: 99490."),
            "ready",
            {"99490": 1},
            25,
            absent=(
                "consent.missing",
                "care-plan.missing",
                "initiating-visit.missing",
                "time.below-threshold",
            ),
        )
    )

    add(
        expect(
            base("ready-99439-two-units", "45 + 20 staff minutes = 65: 99490 + 2 x 99439.", minutes=(45, 20)),
            "ready",
            {"99490": 1, "99439": 2},
            65,
        )
    )

    add(
        expect(
            base("staff-unit-cap", "95 staff minutes: 99439 capped at 2 units.", minutes=(50, 45)),
            "ready",
            {"99490": 1, "99439": 2},
            95,
            rules=("time.staff-cap",),
        )
    )

    add(
        expect(
            base("below-threshold", "Only 15 staff minutes: not yet.", minutes=(15,)),
            "not-yet",
            {},
            15,
            rules=("time.below-threshold",),
            next_threshold={"code": "99490", "minutes_needed": 5},
        )
    )

    s = base("practitioner-track", "35 minutes by the billing practitioner personally: 99491.", minutes=())
    s.add(*entry("te-dr", "2026-10-08T16:00:00+00:00", 35, who=DR_A))
    add(expect(s, "ready", {"99491": 1}, 35, 35))

    s = base(
        "track-choice",
        "Staff 25 min and practitioner 35 min: both tracks qualify; the staff track (60 min) pays more.",
        minutes=(25,),
    )
    s.add(*entry("te-dr", "2026-10-20T16:00:00+00:00", 35, who=DR_A))
    add(expect(s, "ready", {"99490": 1, "99439": 2}, 60, 35, rules=("time.track-choice",)))

    s = base(
        "complex-99487",
        "Moderate MDM attested and 95 staff minutes: 99487 + 99489 pays more than 99490 + 2 x 99439.",
        minutes=(50, 45),
    )
    s.add(attestation("mdm-moderate", when="2026-10-03T16:00:00Z"))
    add(expect(s, "ready", {"99487": 1, "99489": 1}, 95, rules=("time.track-choice",)))

    s = base(
        "complex-not-worth-it",
        "Moderate MDM attested but only 70 staff minutes: 99490 + 2 x 99439 pays more than 99487.",
        minutes=(40, 30),
    )
    s.add(attestation("mdm-moderate", when="2026-10-03T16:00:00Z"))
    add(expect(s, "ready", {"99490": 1, "99439": 2}, 70, rules=("time.track-choice",)))

    s = base("one-chronic-condition", "Only one chronic condition: not eligible.").drop("Condition/c-hf")
    s = s.drop("Condition/c-copd")
    add(expect(s, "not-eligible", {}, 25, rules=("eligibility.chronic-conditions",)))

    s = base("deceased", "Patient died before the month: not eligible.").drop("Patient/p1")
    s.add(patient(deceased="2026-08-14"))
    add(expect(s, "not-eligible", {}, 25, rules=("eligibility.deceased",)))

    s = base(
        "no-risk-attestation", "No practitioner attestation that the conditions put the patient at risk."
    )
    s.drop("Task/attest-risk-attestation")
    add(expect(s, "ready", {"99490": 1}, 25, rules=("eligibility.risk-attestation",)))

    s = base("consent-missing", "No CCM consent recorded.").drop("Consent/consent-1")
    add(expect(s, "blocked", {}, 0, rules=("consent.missing", "time.before-consent")))

    s = base("consent-declined", "The patient declined CCM.").drop("Consent/consent-1")
    s.add(consent(status="rejected"))
    add(expect(s, "blocked", {}, 0, rules=("consent.declined", "time.before-consent")))

    s = base("consent-stopped", "The patient stopped CCM in September: October cannot be billed.")
    s.drop("Consent/consent-1").add(consent(status="inactive", stop="2026-09-12"))
    add(expect(s, "blocked", {}, 0, rules=("consent.stopped",)))

    s = base("consent-stop-this-month", "Stop recorded mid-October: effective at month end, still billable.")
    s.drop("Consent/consent-1").add(consent(status="inactive", stop="2026-10-12"))
    add(expect(s, "ready", {"99490": 1}, 25, rules=("consent.stop-effective",)))

    s = base(
        "consent-other-practitioner", "Consent names dr-a but dr-b is billing.", billing_practitioner=DR_B
    )
    add(expect(s, "blocked", {}, 0, rules=("consent.other-practitioner", "time.before-consent")))

    s = base("consent-disclosures-incomplete", "Consent records only two of the four disclosures.")
    s.drop("Consent/consent-1").add(consent(disclosures=("ccm-available", "cost-sharing")))
    add(expect(s, "ready", {"99490": 1}, 25, rules=("consent.disclosures-incomplete",)))

    s = base(
        "billing-practitioner-unknown", "No option, no PPRF actor on the consent, no general practitioner."
    )
    s.drop("Patient/p1").drop("Consent/consent-1").add(patient(gp=None), consent(billing=None))
    add(expect(s, "blocked", {}, 25, rules=("billing-practitioner.unknown",)))

    s = (
        base("care-plan-missing", "No CCM care plan.")
        .drop("CarePlan/plan-1")
        .drop("Communication/plan-shared-1")
    )
    add(expect(s, "blocked", {}, 25, rules=("care-plan.missing",)))

    s = base("initiating-visit-missing", "Last visit by the billing practitioner was 2 years before consent.")
    s.drop("Encounter/visit-1").add(visit(when="2024-05-02T14:00:00Z"))
    add(expect(s, "blocked", {}, 25, rules=("initiating-visit.missing",)))

    s = base(
        "consent-mid-month", "Consent obtained 15 Oct: 15 minutes logged before it do not count.", minutes=()
    )
    s.drop("Consent/consent-1").drop("Encounter/visit-1").add(
        consent(when="2026-10-15T15:00:00Z"),
        visit(when="2026-10-15T14:00:00Z"),
        *entry("te-early", "2026-10-05T14:00:00+00:00", 15),
        *entry("te-late", "2026-10-20T14:00:00+00:00", 25),
    )
    add(expect(s, "ready", {"99490": 1}, 25, rules=("time.before-consent",)))

    s = base(
        "overlap",
        "Two overlapping entries by the same nurse count once (10:00-10:30 and 10:15-10:45).",
        minutes=(),
    )
    s.add(*entry("te-a", "2026-10-06T10:00:00+00:00", 30), *entry("te-b", "2026-10-06T10:15:00+00:00", 30))
    add(expect(s, "ready", {"99490": 1, "99439": 1}, 45, rules=("time.overlap",)))

    s = base(
        "inpatient",
        "Minutes logged while the patient was an inpatient (10-15 Oct) do not count.",
        minutes=(25,),
    )
    s.add(
        inpatient(start="2026-10-10T08:00:00Z", end="2026-10-15T12:00:00Z"),
        *entry("te-in", "2026-10-12T09:00:00+00:00", 30),
    )
    add(expect(s, "ready", {"99490": 1}, 25, rules=("time.inpatient",)))

    s = base(
        "other-program-minutes",
        "RPM minutes are logged separately and never count toward CCM.",
        minutes=(25,),
    )
    s.add(*entry("te-rpm", "2026-10-07T14:00:00+00:00", 20, program="rpm"))
    add(expect(s, "ready", {"99490": 1}, 25, rules=("time.other-program",)))

    s = base(
        "other-program-same-minutes",
        "20 of 25 CCM minutes were also logged as RPM by the same nurse: only 5 CCM minutes count.",
        minutes=(25,),
    )
    s.add(*entry("te-rpm", "2026-10-05T14:00:00+00:00", 20, program="rpm"))
    add(
        expect(
            s,
            "not-yet",
            {},
            5,
            rules=("time.other-program", "time.below-threshold"),
            next_threshold={"code": "99490", "minutes_needed": 15},
        )
    )

    s = base(
        "timezone-month-boundary",
        "Chicago practice: 31 Oct 22:00 local (1 Nov UTC) counts; 30 Sep 22:00 local (1 Oct UTC) does not.",
        minutes=(),
        timezone="America/Chicago",
    )
    s.add(
        *entry("te-sep", "2026-10-01T03:00:00+00:00", 30), *entry("te-oct", "2026-11-01T03:00:00+00:00", 25)
    )
    add(expect(s, "ready", {"99490": 1}, 25))

    s = base(
        "naive-local-times",
        "dateTimes without offset are read in the practice zone (America/New_York).",
        minutes=(),
        timezone="America/New_York",
    )
    s.add(*entry("te-local", "2026-10-31T23:30:00", 25))
    add(expect(s, "ready", {"99490": 1}, 25))

    conflicts = [
        (
            "ccm-other-practitioner",
            charge("ch-1", "99490", who=DR_B),
            "blocked",
            "Another practitioner already billed CCM this month.",
        ),
        (
            "pcm-same-practitioner",
            charge("ch-1", "99424", who=DR_A),
            "blocked",
            "The billing practitioner billed PCM this month.",
        ),
        (
            "pcm-other-practitioner",
            charge("ch-1", "99426", who=DR_B),
            "ready",
            "Another practitioner billed PCM: allowed, minutes must be separate.",
        ),
        (
            "apcm-same-practitioner",
            charge("ch-1", "G0557", who=DR_A, system=HCPCS),
            "blocked",
            "The billing practitioner billed APCM this month.",
        ),
        (
            "g0181",
            charge("ch-1", "G0181", system=HCPCS),
            "blocked",
            "Home-health care plan oversight billed.",
        ),
        ("g0182", charge("ch-1", "G0182", system=HCPCS), "blocked", "Hospice care plan oversight billed."),
        ("esrd", charge("ch-1", "90960"), "blocked", "ESRD monthly services billed."),
        (
            "tcm",
            charge("ch-1", "99495", who=DR_A, when="2026-10-03"),
            "ready",
            "TCM in the month: allowed, minutes separate.",
        ),
        (
            "rpm",
            charge("ch-1", "99457", who=DR_A),
            "ready",
            "RPM management billed: allowed, minutes separate.",
        ),
    ]
    for rule, item, status, text in conflicts:
        s = base(f"conflict-{rule}", text).add(item)
        add(expect(s, status, {"99490": 1} if status == "ready" else {}, 25, rules=(f"conflict.{rule}",)))

    s = base("missing-note", "A time entry has no Task documenting what was done.", minutes=())
    s.add(*entry("te-1", "2026-10-05T14:00:00+00:00", 25, note=None))
    add(expect(s, "ready", {"99490": 1}, 25, rules=("documentation.missing-note",)))

    s = base("vague-note", "A time entry's note says too little.", minutes=())
    s.add(*entry("te-1", "2026-10-05T14:00:00+00:00", 25, note="called pt"))
    add(expect(s, "ready", {"99490": 1}, 25, rules=("documentation.vague-note",)))

    s = base("malformed-resources", "Broken resources are skipped and listed; the rest is evaluated.")
    s.add(
        "not an object",
        {
            "resourceType": "Encounter",
            "id": "bad-no-period",
            "status": "finished",
            "type": [concept(CARE_PROGRAM, "ccm")],
            "subject": ref(PATIENT),
        },
        {"resourceType": "Condition", "id": "bad-no-code", "subject": ref(PATIENT)},
        {
            "resourceType": "Encounter",
            "id": "bad-date",
            "status": "finished",
            "type": [concept(CARE_PROGRAM, "ccm")],
            "subject": ref(PATIENT),
            "period": {"start": "2026-10-32T10:00:00Z", "end": "2026-10-32T10:30:00Z"},
        },
        {"resourceType": "Condition", "id": "bad-shape", "subject": ref(PATIENT), "code": "E11.9"},
        {
            "resourceType": "Encounter",
            "id": "other-patient",
            "status": "finished",
            "type": [concept(CARE_PROGRAM, "ccm")],
            "subject": ref("Patient/someone-else"),
            "period": {"start": "2026-10-09T10:00:00Z", "end": "2026-10-09T11:00:00Z"},
        },
    )
    add(
        expect(
            s,
            "ready",
            {"99490": 1},
            25,
            skipped=[
                "Encounter/bad-no-period",
                "Condition/bad-no-code",
                "Encounter/bad-date",
                "Condition/bad-shape",
            ],
            skipped_count=5,
        )
    )

    s = base("entered-in-error", "An entered-in-error time entry never counts.", minutes=(25,))
    s.add(*entry("te-err", "2026-10-09T14:00:00+00:00", 30, status="entered-in-error"))
    add(expect(s, "ready", {"99490": 1}, 25))

    s = base(
        "spelling-variants",
        "Absolute references, OID and http/https system variants, dotless ICD-10 codes: read canonically.",
        minutes=(15, 10),
    )
    s.resources = [_respell(r) for r in s.resources]
    add(expect(s, "ready", {"99490": 1}, 25, absent=("initiating-visit.missing", "consent.missing")))
    return out


_SPELLINGS = {
    ICD10: "urn:oid:2.16.840.1.113883.6.90",
    CPT: "https://www.ama-assn.org/go/cpt/",
    CARE_PROGRAM: "http://ccm-ready.org/fhir/CodeSystem/care-program/",
    CARE_ACTIVITY: "http://ccm-ready.org/fhir/CodeSystem/care-activity",
    PARTICIPATION: "http://terminology.hl7.org/CodeSystem/v3-ParticipationType/",
}


def _respell(value: Any) -> Any:
    """The same data spelled differently: absolute references, variant systems, dotless ICD-10 codes."""
    if isinstance(value, list):
        return [_respell(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: _respell(v) for k, v in value.items()}
    ref_value = out.get("reference")
    if isinstance(ref_value, str) and ref_value.count("/") == 1:
        out["reference"] = f"https://ehr.example/fhir/{ref_value}/_history/1"
    system = out.get("system")
    if system in _SPELLINGS:
        if system == ICD10 and isinstance(out.get("code"), str):
            out["code"] = out["code"].replace(".", "")
        out["system"] = _SPELLINGS[system]
    return out


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.json"):
        old.unlink()
    for s in scenarios():
        (OUT / f"{s.name}.json").write_text(json.dumps(s.bundle(), indent=1) + "\n")
        (OUT / f"{s.name}.expected.json").write_text(json.dumps(s.expected, indent=2) + "\n")
    print(f"wrote {len(scenarios())} scenarios to {OUT}")


if __name__ == "__main__":
    main()
