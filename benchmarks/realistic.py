"""Realistic synthetic CCM patients for every benchmark: 12 months of history, as an EHR export carries it.

Each patient has 2-5 chronic Conditions (ICD-10-CM and SNOMED, some resolved), a CCM Consent and care plan
(with the Communication sharing it), an attestation Task, quarterly office visits each with vital-sign
Observations (a blood-pressure panel with components, heart rate, weight, BMI) and a lab DiagnosticReport
with its result Observations, MedicationRequests renewed every three months, Immunizations, an
AllergyIntolerance, a Procedure, Coverage, clinical-note DocumentReferences (a base64 note of ~1.5 kB),
ChargeItems for the months already billed, and in every month 1-6 CCM time entries (Encounter + Task
with a note). Resources carry `meta` like a server export. About 150 resources and ~150 kB per patient.
"""

from __future__ import annotations

import base64
import random
import zlib
from datetime import datetime, timedelta
from typing import Any

from rules.month import Month

CARE_PROGRAM = "https://ccm-ready.org/fhir/CodeSystem/care-program"
CARE_ACTIVITY = "https://ccm-ready.org/fhir/CodeSystem/care-activity"
DISCLOSURE_EXT = "https://ccm-ready.org/fhir/StructureDefinition/ccm-disclosure"
DISCLOSURE_CS = "https://ccm-ready.org/fhir/CodeSystem/ccm-disclosure"
CPT = "http://www.ama-assn.org/go/cpt"
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"
ICD10 = [
    ("E11.9", "Type 2 diabetes mellitus without complications"),
    ("I10", "Essential (primary) hypertension"),
    ("I50.9", "Heart failure, unspecified"),
    ("J44.9", "Chronic obstructive pulmonary disease, unspecified"),
    ("N18.30", "Chronic kidney disease, stage 3 unspecified"),
    ("E78.5", "Hyperlipidemia, unspecified"),
    ("F32.A", "Depression, unspecified"),
    ("M17.11", "Unilateral primary osteoarthritis, right knee"),
    ("J06.9", "Acute upper respiratory infection, unspecified"),
]
SNOMED = [
    ("44054006", "Diabetes mellitus type 2"),
    ("38341003", "Hypertensive disorder"),
    ("195967001", "Asthma"),
    ("49436004", "Atrial fibrillation"),
    ("10509002", "Acute bronchitis"),
]
MEDS = [
    (
        "860975",
        "metformin hydrochloride 500 MG Extended Release Oral Tablet",
        "1 tablet by mouth twice daily",
    ),
    ("314076", "lisinopril 10 MG Oral Tablet", "1 tablet by mouth once daily"),
    ("617312", "atorvastatin 40 MG Oral Tablet", "1 tablet by mouth at bedtime"),
    ("197361", "amlodipine 5 MG Oral Tablet", "1 tablet by mouth once daily"),
    ("310798", "hydrochlorothiazide 25 MG Oral Tablet", "1 tablet by mouth every morning"),
    ("200031", "carvedilol 6.25 MG Oral Tablet", "1 tablet by mouth twice daily with food"),
    ("311036", "insulin glargine 100 UNT/ML Injectable Solution", "20 units subcutaneously at bedtime"),
    ("966247", "levothyroxine sodium 0.05 MG Oral Tablet", "1 tablet by mouth every morning, empty stomach"),
]
LABS = [
    ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", 5.5, 9.5),
    ("2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", "mg/dL", 140, 260),
    ("2571-8", "Triglyceride [Mass/volume] in Serum or Plasma", "mg/dL", 80, 300),
    ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", 0.7, 2.1),
    ("33914-3", "Glomerular filtration rate/1.73 sq M.predicted", "mL/min/{1.73_m2}", 30, 95),
]
NOTES = [
    "Phone call: reviewed home blood pressure log, reinforced low-sodium diet, confirmed pharmacy refill.",
    "Reconciled medications after discharge summary; updated care plan goals; called cardiology.",
    "Coordinated home health referral, faxed orders, educated caregiver on inhaler technique.",
    "Reviewed glucose log (fasting 130-160); discussed evening snacks; message sent to PCP about dose.",
    "called pt",
]
NOTE_TEXT = (
    "SUBJECTIVE: Patient seen for chronic disease follow-up. Reports good adherence to medications, "
    "occasional dizziness on standing, no chest pain, no shortness of breath at rest. Home readings "
    "reviewed. OBJECTIVE: Vitals as recorded; lungs clear; no edema. ASSESSMENT/PLAN: 1. Hypertension, "
    "controlled on current regimen; continue, recheck in 3 months. 2. Type 2 diabetes, A1c trending "
    "down; continue metformin, reinforce diet. 3. Hyperlipidemia on statin; lipids at goal. Care "
    "management: continue monthly CCM calls, care plan reviewed and shared with patient. "
) * 2


def _meta(rng: random.Random, month: Month) -> dict[str, Any]:
    return {
        "versionId": str(rng.randint(1, 4)),
        "lastUpdated": f"{month}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:15:00.000+00:00",
        "source": "#bench-export",
    }


def _ref(key: str) -> dict[str, str]:
    return {"reference": key}


def _code(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    coding: dict[str, Any] = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding], **({"text": display} if display else {})}


def _quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": round(value, 1), "unit": unit, "system": UCUM, "code": unit}


def patient_history(pid: str, rng: random.Random, month: Month, months: int = 12) -> list[dict[str, Any]]:
    """One realistic CCM patient with `months` months of history ending with `month` (ids start with pid)."""
    pat = f"Patient/{pid}"
    n = zlib.crc32(pid.encode()) % 997
    doctor = f"Practitioner/dr-{n % 50}"
    nurse = f"Practitioner/rn-{n % 120}"
    first = month.shift(-(months - 1))
    meta = lambda: _meta(rng, month)  # noqa: E731
    out: list[dict[str, Any]] = [
        {
            "resourceType": "Patient",
            "id": pid,
            "meta": meta(),
            "identifier": [
                {"system": "urn:oid:2.16.840.1.113883.4.3.25", "value": f"MRN{n:08d}"},
                {"system": "http://hl7.org/fhir/sid/us-mbi", "value": f"1EG4TE5MK{n:02d}"},
            ],
            "name": [{"use": "official", "family": f"Bench{pid}", "given": ["Test", "Q"]}],
            "telecom": [{"system": "phone", "value": "555-0100", "use": "home"}],
            "gender": rng.choice(["female", "male"]),
            "birthDate": f"{rng.randint(1930, 1960)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
            "address": [
                {"line": ["12 Main St"], "city": "Springfield", "state": "IL", "postalCode": "62701"}
            ],
            "generalPractitioner": [_ref(doctor)],
        },
        {
            "resourceType": "Coverage",
            "id": f"{pid}-cov",
            "meta": meta(),
            "status": "active",
            "type": _code("http://terminology.hl7.org/CodeSystem/v3-ActCode", "SUBSIDIZ", "Medicare Part B"),
            "beneficiary": _ref(pat),
            "payor": [{"display": "Medicare"}],
        },
        {
            "resourceType": "AllergyIntolerance",
            "id": f"{pid}-allergy",
            "meta": meta(),
            "clinicalStatus": _code(
                "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "active"
            ),
            "code": _code(RXNORM, "7980", "penicillin G"),
            "patient": _ref(pat),
            "reaction": [{"manifestation": [_code("http://snomed.info/sct", "247472004", "Hives")]}],
        },
    ]
    for j in range(rng.randint(2, 5)):
        if rng.random() < 0.6:
            code, display = rng.choice(ICD10)
            system = rng.choice(["http://hl7.org/fhir/sid/icd-10-cm", "urn:oid:2.16.840.1.113883.6.90"])
        else:
            code, display = rng.choice(SNOMED)
            system = "http://snomed.info/sct"
        out.append(
            {
                "resourceType": "Condition",
                "id": f"{pid}-c{j}",
                "meta": meta(),
                "clinicalStatus": _code(
                    "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    rng.choice(["active"] * 9 + ["resolved"]),
                ),
                "verificationStatus": _code(
                    "http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed"
                ),
                "category": [
                    _code("http://terminology.hl7.org/CodeSystem/condition-category", "problem-list-item")
                ],
                "code": _code(system, code, display),
                "subject": _ref(pat),
                "onsetDateTime": f"{rng.randint(2005, 2024)}-0{rng.randint(1, 9)}-15",
                "recordedDate": "2025-01-10T09:00:00-05:00",
            }
        )
    consent_month = first.shift(rng.randint(0, months - 1))
    consent_day = rng.randint(1, 20)
    out += [
        {
            "resourceType": "Consent",
            "id": f"{pid}-consent",
            "meta": meta(),
            "status": rng.choice(["active"] * 9 + ["rejected"]),
            "extension": [
                {"url": DISCLOSURE_EXT, "valueCoding": {"system": DISCLOSURE_CS, "code": c}}
                for c in ("ccm-available", "cost-sharing", "one-practitioner", "right-to-stop")
            ],
            "scope": _code("http://terminology.hl7.org/CodeSystem/consentscope", "treatment"),
            "category": [_code(LOINC, "59284-0"), _code(CARE_PROGRAM, "ccm")],
            "patient": _ref(pat),
            "dateTime": f"{consent_month}-{consent_day:02d}T15:00:00-05:00",
            "performer": [_ref(nurse)],
            "provision": {
                "type": "permit",
                "period": {"start": f"{consent_month}-{consent_day:02d}"},
                "actor": [
                    {
                        "role": _code("http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "PPRF"),
                        "reference": _ref(doctor),
                    }
                ],
            },
        },
        {
            "resourceType": "CarePlan",
            "id": f"{pid}-plan",
            "meta": meta(),
            "status": "active",
            "intent": "plan",
            "category": [_code(CARE_PROGRAM, "ccm")],
            "title": "CCM care plan",
            "description": "Problems, goals, interventions, medication management, community resources.",
            "subject": _ref(pat),
            "period": {"start": f"{consent_month}-{consent_day:02d}"},
            "author": _ref(doctor),
        },
        {
            "resourceType": "Communication",
            "id": f"{pid}-plan-shared",
            "meta": meta(),
            "status": "completed",
            "subject": _ref(pat),
            "about": [_ref(f"CarePlan/{pid}-plan")],
            "sent": f"{consent_month}-{consent_day:02d}T16:00:00-05:00",
        },
        {
            "resourceType": "Task",
            "id": f"{pid}-risk",
            "meta": meta(),
            "status": "completed",
            "intent": "order",
            "code": _code(CARE_ACTIVITY, "risk-attestation"),
            "for": _ref(pat),
            "owner": _ref(doctor),
            "authoredOn": f"{first}-02T10:00:00-05:00",
        },
        {
            "resourceType": "Immunization",
            "id": f"{pid}-flu",
            "meta": meta(),
            "status": "completed",
            "vaccineCode": _code("http://hl7.org/fhir/sid/cvx", "141", "Influenza, seasonal, injectable"),
            "patient": _ref(pat),
            "occurrenceDateTime": f"{first.shift(1)}-10",
        },
        {
            "resourceType": "Procedure",
            "id": f"{pid}-proc",
            "meta": meta(),
            "status": "completed",
            "code": _code("http://snomed.info/sct", "73761001", "Colonoscopy"),
            "subject": _ref(pat),
            "performedDateTime": f"{first.shift(2)}-14",
        },
    ]
    meds = rng.sample(MEDS, rng.randint(3, 6))
    for q in range(0, months, 3):
        vm = first.shift(q)
        day = rng.randint(3, 25)
        visit = f"{pid}-v{q}"
        when = f"{vm}-{day:02d}T10:00:00-05:00"
        out.append(
            {
                "resourceType": "Encounter",
                "id": visit,
                "meta": meta(),
                "status": "finished",
                "class": {"system": ACT, "code": "AMB"},
                "type": [_code(CPT, rng.choice(["99213", "99214"]))],
                "subject": _ref(pat),
                "participant": [{"individual": _ref(doctor)}],
                "period": {"start": when, "end": f"{vm}-{day:02d}T10:30:00-05:00"},
                "reasonCode": [_code("http://snomed.info/sct", "390906007", "Follow-up encounter")],
            }
        )
        vitals = [
            ("8867-4", "Heart rate", _quantity(rng.uniform(58, 96), "/min")),
            ("29463-7", "Body weight", _quantity(rng.uniform(55, 120), "kg")),
            ("39156-5", "Body mass index", _quantity(rng.uniform(19, 38), "kg/m2")),
        ]
        out.append(
            {
                "resourceType": "Observation",
                "id": f"{visit}-bp",
                "meta": meta(),
                "status": "final",
                "category": [
                    _code("http://terminology.hl7.org/CodeSystem/observation-category", "vital-signs")
                ],
                "code": _code(LOINC, "85354-9", "Blood pressure panel"),
                "subject": _ref(pat),
                "encounter": _ref(f"Encounter/{visit}"),
                "effectiveDateTime": when,
                "component": [
                    {
                        "code": _code(LOINC, "8480-6", "Systolic"),
                        "valueQuantity": _quantity(rng.uniform(110, 160), "mm[Hg]"),
                    },
                    {
                        "code": _code(LOINC, "8462-4", "Diastolic"),
                        "valueQuantity": _quantity(rng.uniform(65, 95), "mm[Hg]"),
                    },
                ],
            }
        )
        for k, (code, display, value) in enumerate(vitals):
            out.append(
                {
                    "resourceType": "Observation",
                    "id": f"{visit}-vs{k}",
                    "meta": meta(),
                    "status": "final",
                    "category": [
                        _code("http://terminology.hl7.org/CodeSystem/observation-category", "vital-signs")
                    ],
                    "code": _code(LOINC, code, display),
                    "subject": _ref(pat),
                    "encounter": _ref(f"Encounter/{visit}"),
                    "effectiveDateTime": when,
                    "valueQuantity": value,
                }
            )
        results = []
        for k, (code, display, unit, lo, hi) in enumerate(LABS):
            oid = f"{visit}-lab{k}"
            results.append(_ref(f"Observation/{oid}"))
            out.append(
                {
                    "resourceType": "Observation",
                    "id": oid,
                    "meta": meta(),
                    "status": "final",
                    "category": [
                        _code("http://terminology.hl7.org/CodeSystem/observation-category", "laboratory")
                    ],
                    "code": _code(LOINC, code, display),
                    "subject": _ref(pat),
                    "effectiveDateTime": when,
                    "valueQuantity": _quantity(rng.uniform(lo, hi), unit),
                    "referenceRange": [{"low": _quantity(lo, unit), "high": _quantity(hi, unit)}],
                }
            )
        out.append(
            {
                "resourceType": "DiagnosticReport",
                "id": f"{visit}-labs",
                "meta": meta(),
                "status": "final",
                "code": _code(LOINC, "24323-8", "Comprehensive metabolic 2000 panel"),
                "subject": _ref(pat),
                "effectiveDateTime": when,
                "result": results,
            }
        )
        out.append(
            {
                "resourceType": "DocumentReference",
                "id": f"{visit}-note",
                "meta": meta(),
                "status": "current",
                "type": _code(LOINC, "11506-3", "Progress note"),
                "subject": _ref(pat),
                "date": when,
                "author": [_ref(doctor)],
                "content": [
                    {
                        "attachment": {
                            "contentType": "text/plain",
                            "data": base64.b64encode(NOTE_TEXT.encode()).decode(),
                        }
                    }
                ],
                "context": {"encounter": [_ref(f"Encounter/{visit}")]},
            }
        )
        for k, (rx, name, dose) in enumerate(meds):
            out.append(
                {
                    "resourceType": "MedicationRequest",
                    "id": f"{visit}-rx{k}",
                    "meta": meta(),
                    "status": "active" if q + 3 >= months else "completed",
                    "intent": "order",
                    "medicationCodeableConcept": _code(RXNORM, rx, name),
                    "subject": _ref(pat),
                    "encounter": _ref(f"Encounter/{visit}"),
                    "authoredOn": when,
                    "requester": _ref(doctor),
                    "dosageInstruction": [
                        {"text": dose, "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}}}
                    ],
                    "dispenseRequest": {"numberOfRepeatsAllowed": 3, "quantity": _quantity(90, "{tbl}")},
                }
            )
    for back in range(1, months):
        m = first.shift(back - 1)
        if rng.random() < 0.6:
            out.append(
                {
                    "resourceType": "ChargeItem",
                    "id": f"{pid}-charge-{m}",
                    "meta": meta(),
                    "status": "billed",
                    "code": _code(CPT, "99490"),
                    "subject": _ref(pat),
                    "occurrenceDateTime": f"{m}-28T12:00:00-05:00",
                    "performer": [{"actor": _ref(doctor)}],
                }
            )
    for back in range(months):
        m = first.shift(back)
        start = datetime(m.year, m.month, 1, 8, 0)
        for j in range(rng.randint(1, 6)):
            start += timedelta(hours=rng.randint(5, 100))
            if start.month != m.month:
                break
            minutes = rng.randint(4, 25)
            who = doctor if rng.random() < 0.15 else nurse
            begin = start.isoformat() + "-05:00"
            end = (start + timedelta(minutes=minutes)).isoformat() + "-05:00"
            eid = f"{pid}-t{m}-{j}"
            out.append(
                {
                    "resourceType": "Encounter",
                    "id": eid,
                    "meta": meta(),
                    "status": "finished",
                    "class": {"system": ACT, "code": "VR"},
                    "type": [_code(CARE_PROGRAM, "rpm" if rng.random() < 0.1 else "ccm")],
                    "subject": _ref(pat),
                    "participant": [{"individual": _ref(who)}],
                    "period": {"start": begin, "end": end},
                    "length": _quantity(minutes, "min"),
                }
            )
            out.append(
                {
                    "resourceType": "Task",
                    "id": f"{eid}-task",
                    "meta": meta(),
                    "status": "completed",
                    "intent": "order",
                    "code": _code(CARE_ACTIVITY, "care-coordination"),
                    "for": _ref(pat),
                    "encounter": _ref(f"Encounter/{eid}"),
                    "owner": _ref(who),
                    "executionPeriod": {"start": begin, "end": end},
                    "note": [{"text": rng.choice(NOTES)}],
                }
            )
    return out
