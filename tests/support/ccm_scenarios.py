"""Synthetic FHIR R4 patient-months for CDS Hooks and audit-packet tests (no PHI: invented data).

`scenario(kind, month)` builds the resources of one patient whose CCM month is expected to come out
`ready`, `not-yet`, `blocked` (no consent) or `not-eligible` (one chronic condition), following the
project's FHIR conventions (docs/fhir-conventions.md).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from fhir_mapping.write_consent import CONSENT_ID
from fhir_mapping.write_time import TIME_ENTRY_ID
from rules.month import Month
from tests.support.includes import included_people

PROGRAM = "https://ccm-ready.org/fhir/CodeSystem/care-program"
ACTIVITY = "https://ccm-ready.org/fhir/CodeSystem/care-activity"
DISCLOSURE = "https://ccm-ready.org/fhir/CodeSystem/ccm-disclosure"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
CPT = "http://www.ama-assn.org/go/cpt"
PRACTITIONER = "Practitioner/pr-ccm-1"
STAFF = "Practitioner/rn-ccm-1"
KINDS = ("ready", "not-yet", "blocked", "not-eligible")


def _ref(ref: str) -> dict[str, str]:
    return {"reference": ref}


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _cc(system: str, code: str, display: str = "") -> dict[str, Any]:
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding]}


def patient(pid: str, family: str = "Testpatient") -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": pid,
        "name": [{"family": family, "given": ["Casey"]}],
        "birthDate": "1950-03-04",
        "generalPractitioner": [_ref(PRACTITIONER)],
    }


def practitioners() -> list[dict[str, Any]]:
    return [
        {"resourceType": "Practitioner", "id": ref.split("/")[1], "name": [{"family": name}]}
        for ref, name in ((PRACTITIONER, "Billing"), (STAFF, "Nurse"))
    ]


def condition(pid: str, cid: str, code: str, display: str) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": cid,
        "clinicalStatus": _cc("http://terminology.hl7.org/CodeSystem/condition-clinical", "active"),
        "verificationStatus": _cc("http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed"),
        "category": [_cc("http://terminology.hl7.org/CodeSystem/condition-category", "problem-list-item")],
        "code": {**_cc(ICD10, code, display), "text": display},
        "subject": _ref(f"Patient/{pid}"),
        "onsetDateTime": "2023-01-15",
    }


def consent(pid: str, obtained: datetime) -> dict[str, Any]:
    ext = [
        {
            "url": "https://ccm-ready.org/fhir/StructureDefinition/ccm-disclosure",
            "valueCoding": {"system": DISCLOSURE, "code": code},
        }
        for code in ("ccm-available", "cost-sharing", "one-practitioner", "right-to-stop")
    ]
    ext.append(
        {"url": "https://ccm-ready.org/fhir/StructureDefinition/consent-method", "valueCode": "verbal"}
    )
    return {
        "resourceType": "Consent",
        "id": f"{pid}-consent",
        "extension": ext,
        "status": "active",
        "scope": _cc("http://terminology.hl7.org/CodeSystem/consentscope", "treatment"),
        "category": [_cc(PROGRAM, "ccm"), _cc("http://loinc.org", "59284-0")],
        "patient": _ref(f"Patient/{pid}"),
        "dateTime": _iso(obtained),
        "performer": [_ref(STAFF)],
        "policyRule": _cc("http://terminology.hl7.org/CodeSystem/v3-ActCode", "OPTIN"),
        "provision": {
            "type": "permit",
            "period": {"start": _iso(obtained)},
            "actor": [
                {
                    "role": _cc("http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "PPRF"),
                    "reference": _ref(PRACTITIONER),
                }
            ],
        },
    }


def care_plan(pid: str, start: datetime) -> dict[str, Any]:
    return {
        "resourceType": "CarePlan",
        "id": f"{pid}-plan",
        "status": "active",
        "intent": "plan",
        "category": [_cc(PROGRAM, "ccm")],
        "title": "Comprehensive CCM care plan",
        "subject": _ref(f"Patient/{pid}"),
        "period": {"start": _iso(start)},
        "created": _iso(start),
        "author": _ref(PRACTITIONER),
    }


def visit(pid: str, when: datetime) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "id": f"{pid}-visit",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "type": [_cc(CPT, "99214")],
        "subject": _ref(f"Patient/{pid}"),
        "participant": [{"individual": _ref(PRACTITIONER)}],
        "period": {"start": _iso(when), "end": _iso(when + timedelta(minutes=25))},
    }


def time_entry(
    pid: str, eid: str, start: datetime, minutes: int, who: str, note: str
) -> list[dict[str, Any]]:
    """One CCM time entry (Encounter) and the completed Task documenting it."""
    end = start + timedelta(minutes=minutes)
    enc = {
        "resourceType": "Encounter",
        "id": eid,
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "VR"},
        "type": [_cc(PROGRAM, "ccm")],
        "subject": _ref(f"Patient/{pid}"),
        "participant": [{"individual": _ref(who)}],
        "period": {"start": _iso(start), "end": _iso(end)},
        "length": {"value": minutes, "unit": "min", "system": "http://unitsofmeasure.org", "code": "min"},
    }
    task = {
        "resourceType": "Task",
        "id": f"{eid}-task",
        "status": "completed",
        "intent": "order",
        "code": _cc(ACTIVITY, "medication-management"),
        "for": _ref(f"Patient/{pid}"),
        "encounter": _ref(f"Encounter/{eid}"),
        "executionPeriod": {"start": _iso(start), "end": _iso(end)},
        "owner": _ref(who),
        "note": [{"text": note}],
    }
    return [enc, task]


def attestation(pid: str, when: datetime) -> dict[str, Any]:
    return {
        "resourceType": "Task",
        "id": f"{pid}-risk",
        "status": "completed",
        "intent": "order",
        "code": _cc(ACTIVITY, "risk-attestation"),
        "for": _ref(f"Patient/{pid}"),
        "owner": _ref(PRACTITIONER),
        "authoredOn": _iso(when),
        "executionPeriod": {"start": _iso(when)},
    }


def scenario(kind: str, month: Month | str, pid: str | None = None) -> list[dict[str, Any]]:
    """The resources of one patient whose `month` is expected to be `kind` (see KINDS)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    m = month if isinstance(month, Month) else Month.parse(month)
    pid = pid or f"cds-{kind}"
    first = datetime(m.year, m.month, 1, tzinfo=UTC)
    consent_at = first - timedelta(days=75)
    out: list[dict[str, Any]] = [patient(pid), *practitioners()]
    out.append(condition(pid, f"{pid}-dm", "E11.9", "Type 2 diabetes mellitus without complications"))
    if kind != "not-eligible":
        out.append(condition(pid, f"{pid}-htn", "I10", "Essential (primary) hypertension"))
        out.append(condition(pid, f"{pid}-ckd", "N18.30", "Chronic kidney disease, stage 3 unspecified"))
    if kind != "blocked":
        out.append(consent(pid, consent_at))
    out += [care_plan(pid, consent_at + timedelta(days=1)), visit(pid, consent_at - timedelta(days=40))]
    out.append(attestation(pid, consent_at))
    minutes = (12, 13) if kind in ("ready", "blocked", "not-eligible") else (8, 6)
    for i, mins in enumerate(minutes):
        start = first + timedelta(days=2 + 3 * i, hours=15)
        out += time_entry(
            pid,
            f"{pid}-t{i}",
            start,
            mins,
            STAFF,
            f"Phone call {i + 1}: reviewed glucose log and blood pressure <script>x</script>",
        )
    return out


def searchset(resources: list[dict[str, Any]], base: str = "http://ehr.example/fhir") -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [
            {"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": r, "search": {"mode": "match"}}
            for r in resources
        ],
    }


def prefetch(resources: list[dict[str, Any]], pid: str) -> dict[str, Any]:
    """What an EHR sends for the ccm-readiness prefetch templates."""
    by_type: dict[str, list[dict[str, Any]]] = {}
    for r in resources:
        by_type.setdefault(r["resourceType"], []).append(r)
    pat = next(r for r in resources if r["resourceType"] == "Patient" and r["id"] == pid)
    # `_include=Encounter:participant`: the people who took part come with the encounters.
    people = included_people(by_type.get("Encounter", []), resources)
    return {
        "patient": pat,
        "conditions": searchset(by_type.get("Condition", [])),
        "consents": searchset(by_type.get("Consent", [])),
        "careplans": searchset(by_type.get("CarePlan", [])),
        "encounters": searchset(by_type.get("Encounter", []) + people),
        "visits": searchset([]),  # the visits are among the encounters above (a superset is fine)
        "tasks": searchset(by_type.get("Task", [])),
        "communications": searchset([]),
        "chargeitems": searchset(by_type.get("ChargeItem", [])),
        "claims": searchset(by_type.get("Claim", [])),
        "eobs": searchset(by_type.get("ExplanationOfBenefit", [])),
        "notes": searchset([d for d in by_type.get("DocumentReference", []) if is_app_note(d)]),
    }


def is_app_note(doc: dict[str, Any]) -> bool:
    """A DocumentReference the `notes` template finds: it has the app's time-entry or consent identifier."""
    systems = {i.get("system") for i in doc.get("identifier") or () if isinstance(i, dict)}
    return bool(systems & {TIME_ENTRY_ID, CONSENT_ID})


def transaction(resources: list[dict[str, Any]]) -> dict[str, Any]:
    """A transaction Bundle that PUTs every resource under its own id (seeds a real server)."""
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
            for r in resources
        ],
    }


def hook_request(pid: str, **extra: Any) -> dict[str, Any]:
    """A CDS Hooks 2.0 patient-view request body."""
    return {
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "hook": "patient-view",
        "context": {"userId": PRACTITIONER, "patientId": pid},
        **extra,
    }


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2)
