"""Benchmark: 10,000 synthetic patient-months from NDJSON to Verdicts, against the orjson parse floor.

    .venv/bin/python benchmarks/evaluate.py [--patients N] [--seed S] [--profile]

Writes a population NDJSON export to a temporary directory (each patient: a few ICD-10-CM and
SNOMED Conditions, a CCM consent, a care plan, visits, 2-15 time-entry Encounters with their
Tasks, an attestation; resources carry meta like a server export), then times
(a) orjson parsing of every line (the floor) and
(b) load_path + group_by_patient + read_facts + evaluate for every patient.
The last line printed is `ratio_to_parse_floor=X.XX` (target <= 3.0).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fhir_mapping.reader import group_by_patient, read_facts  # noqa: E402
from fhir_mapping.sources import load_path  # noqa: E402
from rules.evaluate import evaluate  # noqa: E402
from rules.month import Month  # noqa: E402

MONTH = "2026-10"
CARE_PROGRAM = "https://ccm-ready.org/fhir/CodeSystem/care-program"
CARE_ACTIVITY = "https://ccm-ready.org/fhir/CodeSystem/care-activity"
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
    ("26929004", "Alzheimer's disease"),
]
NOTES = [
    "Phone call: reviewed home blood pressure log, reinforced low-sodium diet, confirmed pharmacy refill.",
    "Reconciled medications after discharge summary; updated care plan goals; called cardiology.",
    "Coordinated home health referral, faxed orders, educated caregiver on inhaler technique.",
    "called pt",
]


def _meta(rng: random.Random) -> dict[str, Any]:
    return {
        "versionId": str(rng.randint(1, 4)),
        "lastUpdated": f"2026-10-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:15:00.000+00:00",
        "source": "#bench-export",
    }


def _ref(key: str) -> dict[str, str]:
    return {"reference": key}


def patient_resources(i: int, rng: random.Random) -> list[dict[str, Any]]:
    pid = f"bench-{i}"
    pat = f"Patient/{pid}"
    doctor = f"Practitioner/dr-{i % 50}"
    nurse = f"Practitioner/rn-{i % 120}"
    out: list[dict[str, Any]] = [
        {
            "resourceType": "Patient",
            "id": pid,
            "meta": _meta(rng),
            "identifier": [{"system": "urn:oid:2.16.840.1.113883.4.3.25", "value": f"MRN{i:08d}"}],
            "name": [{"use": "official", "family": f"Bench{i}", "given": ["Test"]}],
            "gender": rng.choice(["female", "male"]),
            "birthDate": f"{rng.randint(1930, 1960)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
            "generalPractitioner": [_ref(doctor)],
        }
    ]
    n_conditions = rng.randint(1, 5)
    for j in range(n_conditions):
        if rng.random() < 0.6:
            code, display = rng.choice(ICD10)
            system = rng.choice(["http://hl7.org/fhir/sid/icd-10-cm", "urn:oid:2.16.840.1.113883.6.90"])
            if rng.random() < 0.2:
                code = code.replace(".", "")
        else:
            code, display = rng.choice(SNOMED)
            system = "http://snomed.info/sct"
        out.append(
            {
                "resourceType": "Condition",
                "id": f"{pid}-c{j}",
                "meta": _meta(rng),
                "clinicalStatus": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                            "code": rng.choice(["active"] * 9 + ["resolved"]),
                        }
                    ]
                },
                "verificationStatus": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                            "code": "confirmed",
                        }
                    ]
                },
                "category": [
                    {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/condition-category",
                                "code": "problem-list-item",
                            }
                        ]
                    }
                ],
                "code": {"coding": [{"system": system, "code": code, "display": display}], "text": display},
                "subject": _ref(pat),
                "onsetDateTime": f"{rng.randint(2005, 2024)}-0{rng.randint(1, 9)}-15",
                "recordedDate": "2025-01-10T09:00:00-05:00",
            }
        )
    consent_day = rng.randint(1, 28)
    consent_month = rng.choice(["2026-03", "2026-07", "2026-10"])
    out.append(
        {
            "resourceType": "Consent",
            "id": f"{pid}-consent",
            "meta": _meta(rng),
            "status": rng.choice(["active"] * 8 + ["inactive", "rejected"]),
            "extension": [
                {
                    "url": "https://ccm-ready.org/fhir/StructureDefinition/consent-method",
                    "valueCode": "verbal",
                }
            ]
            + [
                {
                    "url": "https://ccm-ready.org/fhir/StructureDefinition/ccm-disclosure",
                    "valueCoding": {
                        "system": "https://ccm-ready.org/fhir/CodeSystem/ccm-disclosure",
                        "code": c,
                    },
                }
                for c in ("ccm-available", "cost-sharing", "one-practitioner", "right-to-stop")
            ],
            "scope": {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "treatment"}
                ]
            },
            "category": [
                {"coding": [{"system": "http://loinc.org", "code": "59284-0"}]},
                {"coding": [{"system": CARE_PROGRAM, "code": "ccm"}]},
            ],
            "patient": _ref(pat),
            "dateTime": f"{consent_month}-{consent_day:02d}T15:00:00-05:00",
            "performer": [_ref(nurse)],
            "provision": {
                "type": "permit",
                "period": {"start": f"{consent_month}-{consent_day:02d}", "end": "2026-10-20"},
                "actor": [
                    {
                        "role": {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                    "code": "PPRF",
                                }
                            ]
                        },
                        "reference": _ref(doctor),
                    }
                ],
            },
        }
    )
    out.append(
        {
            "resourceType": "CarePlan",
            "id": f"{pid}-plan",
            "meta": _meta(rng),
            "status": "active",
            "intent": "plan",
            "category": [{"coding": [{"system": CARE_PROGRAM, "code": "ccm"}]}],
            "title": "CCM care plan",
            "subject": _ref(pat),
            "period": {"start": f"{consent_month}-{consent_day:02d}"},
            "author": _ref(doctor),
        }
    )
    for j in range(rng.randint(1, 2)):
        out.append(
            {
                "resourceType": "Encounter",
                "id": f"{pid}-v{j}",
                "meta": _meta(rng),
                "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                "type": [
                    {
                        "coding": [
                            {
                                "system": "http://www.ama-assn.org/go/cpt",
                                "code": rng.choice(["99213", "99214"]),
                            }
                        ]
                    }
                ],
                "subject": _ref(pat),
                "participant": [{"individual": _ref(doctor)}],
                "period": {
                    "start": f"2026-0{rng.randint(1, 9)}-10T14:00:00-05:00",
                    "end": "2026-09-10T14:30:00-05:00",
                },
            }
        )
    out.append(
        {
            "resourceType": "Task",
            "id": f"{pid}-risk",
            "meta": _meta(rng),
            "status": "completed",
            "intent": "order",
            "code": {"coding": [{"system": CARE_ACTIVITY, "code": "risk-attestation"}]},
            "for": _ref(pat),
            "owner": _ref(doctor),
            "authoredOn": "2026-03-02T10:00:00-05:00",
        }
    )
    start = datetime(2026, 10, 1, 8, 0)
    for j in range(rng.randint(2, 15)):
        start += timedelta(hours=rng.randint(5, 40))
        minutes = rng.randint(4, 25)
        who = doctor if rng.random() < 0.15 else nurse
        begin = start.isoformat() + "-05:00"
        end = (start + timedelta(minutes=minutes)).isoformat() + "-05:00"
        eid = f"{pid}-t{j}"
        out.append(
            {
                "resourceType": "Encounter",
                "id": eid,
                "meta": _meta(rng),
                "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "VR"},
                "type": [
                    {"coding": [{"system": CARE_PROGRAM, "code": "rpm" if rng.random() < 0.1 else "ccm"}]}
                ],
                "subject": _ref(pat),
                "participant": [{"individual": _ref(who)}],
                "period": {"start": begin, "end": end},
                "length": {
                    "value": minutes,
                    "unit": "min",
                    "system": "http://unitsofmeasure.org",
                    "code": "min",
                },
            }
        )
        out.append(
            {
                "resourceType": "Task",
                "id": f"{eid}-task",
                "meta": _meta(rng),
                "status": "completed",
                "intent": "order",
                "code": {"coding": [{"system": CARE_ACTIVITY, "code": "care-coordination"}]},
                "for": _ref(pat),
                "encounter": _ref(f"Encounter/{eid}"),
                "owner": _ref(who),
                "executionPeriod": {"start": begin, "end": end},
                "note": [{"text": rng.choice(NOTES)}],
            }
        )
    return out


def write_population(path: Path, patients: int, seed: int) -> int:
    rng = random.Random(seed)
    count = 0
    with path.open("wb") as fh:
        for i in range(patients):
            for res in patient_resources(i, rng):
                fh.write(orjson.dumps(res))
                fh.write(b"\n")
                count += 1
    return count


def parse_floor(path: Path) -> float:
    started = time.perf_counter()
    loads = orjson.loads
    data = path.read_bytes()
    parsed = [loads(line) for line in data.split(b"\n") if line]
    elapsed = time.perf_counter() - started
    assert parsed
    return elapsed


def full_run(path: Path) -> tuple[float, dict[str, int]]:
    month = Month.parse(MONTH)
    started = time.perf_counter()
    groups = group_by_patient(load_path(path))
    statuses: dict[str, int] = {}
    for key, resources in groups.items():
        verdict = evaluate(read_facts(resources, key), month)
        statuses[verdict.status] = statuses.get(verdict.status, 0) + 1
    return time.perf_counter() - started, statuses


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--profile", action="store_true", help="print the top functions of the full run")
    args = parser.parse_args(argv)

    evaluate(read_facts([{"resourceType": "Patient", "id": "warm"}]), MONTH)  # load packs and value sets
    with tempfile.TemporaryDirectory(prefix="ccm-bench-") as tmp:
        path = Path(tmp) / "population.ndjson"
        resources = write_population(path, args.patients, args.seed)
        size_mb = path.stat().st_size / 1e6
        print(f"population: {args.patients} patients, {resources} resources, {size_mb:.1f} MB NDJSON")
        floor = min(parse_floor(path) for _ in range(3))
        print(f"(a) orjson parse only: {floor:.3f} s ({args.patients / floor:,.0f} patients/s)")
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
        full, statuses = min((full_run(path) for _ in range(2)), key=lambda r: r[0])
        if args.profile:
            profiler.disable()
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
        print(
            f"(b) load + group + read_facts + evaluate: {full:.3f} s ({args.patients / full:,.0f} patients/s)"
        )
        print(f"statuses: {dict(sorted(statuses.items()))}")
        print(f"ratio_to_parse_floor={full / floor:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
