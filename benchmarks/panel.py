"""Time-to-verdict over a simulated distant EHR: our batch fetch vs a naive page-by-page client.

Starts sekmet-fhir on loopback, seeds N synthetic CCM patients (conditions, consent, care plan,
visits, ~30 time entries with Tasks in the month plus last month's, attestations, charge items),
puts a loopback proxy adding a fixed latency per request in front of it, then measures for each
patient (a) `smart_app.readiness.fetch.patient_month` through FhirClient and (b) a naive client that runs
one sequential search per resource type with a small `_count`, following every page, no batch.
Both feed the same reader and evaluator. The last line is machine-readable:

    round_trips=N naive_round_trips=M speedup=X.XX

Run: .venv/bin/python benchmarks/panel.py [--patients 8] [--latency-ms 50]
"""

from __future__ import annotations

import argparse
import random
import signal
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.latency_proxy import LatencyProxy  # noqa: E402
from fhir_mapping.reader import read_facts  # noqa: E402
from rules.evaluate import evaluate  # noqa: E402
from rules.month import Month  # noqa: E402
from smart_app.fhir.client import FhirClient  # noqa: E402
from smart_app.readiness.use_case import patient_month  # noqa: E402
from tests.support.sekmet import start_sekmet  # noqa: E402

CARE_PROGRAM = "https://ccm-ready.org/fhir/CodeSystem/care-program"
CARE_ACTIVITY = "https://ccm-ready.org/fhir/CodeSystem/care-activity"
CPT = "http://www.ama-assn.org/go/cpt"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
PPRF = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
DISCLOSURE_EXT = "https://ccm-ready.org/fhir/StructureDefinition/ccm-disclosure"
DISCLOSURE_CS = "https://ccm-ready.org/fhir/CodeSystem/ccm-disclosure"
NAIVE_TYPES = ("Condition", "CarePlan", "Consent", "Encounter", "Task", "Communication", "ChargeItem")
ACTIVITIES = (
    (
        "medication-review",
        "Reviewed the medication list by phone; patient taking metformin twice daily as planned.",
    ),
    ("care-coordination", "Called cardiology to move the echo forward; faxed the latest labs and notes."),
    (
        "symptom-check",
        "Home BP log reviewed: readings 128-142 systolic; advised low-salt diet, recheck in a week.",
    ),
    ("education", "Taught foot checks and hypoglycaemia signs; patient repeated the plan back correctly."),
)


def _entry(full_url: str, resource: dict[str, Any]) -> dict[str, Any]:
    return {
        "fullUrl": full_url,
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"]},
    }


def _urn() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def patient_bundle(
    rng: random.Random, month: Month, dr: str, rn: str, entries_per_month: int
) -> tuple[dict[str, Any], str]:
    """A transaction for one realistic CCM patient, and the identifier value that finds the patient."""
    tag = uuid.uuid4().hex
    pat = _urn()
    ref = {"reference": pat}
    consent_year = month.year - rng.randint(1, 3)
    out = [
        _entry(
            pat,
            {
                "resourceType": "Patient",
                "identifier": [{"system": "urn:bench", "value": tag}],
                "name": [{"family": "Synthetic", "given": ["Bench"]}],
                "birthDate": "1948-05-17",
                "generalPractitioner": [{"reference": dr}],
            },
        ),
    ]
    for code in rng.sample(["E11.9", "I10", "N18.3", "J44.9", "I50.9", "E78.5"], 3):
        out.append(
            _entry(
                _urn(),
                {
                    "resourceType": "Condition",
                    "subject": ref,
                    "code": {"coding": [{"system": ICD10, "code": code}]},
                    "clinicalStatus": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                "code": "active",
                            }
                        ]
                    },
                },
            )
        )
    for year in range(consent_year - 1, month.year + 1):  # yearly E/M visits, one before the consent
        day = rng.randint(1, 9)
        out.append(
            _entry(
                _urn(),
                {
                    "resourceType": "Encounter",
                    "status": "finished",
                    "class": {"system": ACT, "code": "AMB"},
                    "type": [{"coding": [{"system": CPT, "code": "99214"}]}],
                    "subject": ref,
                    "participant": [{"individual": {"reference": dr}}],
                    "period": {
                        "start": f"{year}-02-0{day}T10:00:00-06:00",
                        "end": f"{year}-02-0{day}T10:30:00-06:00",
                    },
                },
            )
        )
    plan = _urn()
    consent_date = f"{consent_year}-03-10"
    out += [
        _entry(
            _urn(),
            {
                "resourceType": "Consent",
                "status": "active",
                "scope": {
                    "coding": [
                        {"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "treatment"}
                    ]
                },
                "category": [
                    {"coding": [{"system": CARE_PROGRAM, "code": "ccm"}]},
                    {"coding": [{"system": "http://loinc.org", "code": "59284-0"}]},
                ],
                "patient": ref,
                "dateTime": f"{consent_date}T09:00:00-05:00",
                "performer": [{"reference": rn}],
                "policyRule": {"text": "Medicare CCM consent"},
                "extension": [
                    {"url": DISCLOSURE_EXT, "valueCoding": {"system": DISCLOSURE_CS, "code": c}}
                    for c in ("ccm-available", "cost-sharing", "one-practitioner", "right-to-stop")
                ],
                "provision": {
                    "actor": [
                        {
                            "role": {"coding": [{"system": PPRF, "code": "PPRF"}]},
                            "reference": {"reference": dr},
                        }
                    ]
                },
            },
        ),
        _entry(
            plan,
            {
                "resourceType": "CarePlan",
                "status": "active",
                "intent": "plan",
                "subject": ref,
                "category": [{"coding": [{"system": CARE_PROGRAM, "code": "ccm"}]}],
                "period": {"start": consent_date},
                "author": {"reference": dr},
            },
        ),
        _entry(
            _urn(),
            {
                "resourceType": "Communication",
                "status": "completed",
                "subject": ref,
                "about": [{"reference": plan}],
                "sent": f"{consent_date}T12:00:00-05:00",
            },
        ),
        _entry(
            _urn(),
            {
                "resourceType": "Task",
                "status": "completed",
                "intent": "order",
                "for": ref,
                "owner": {"reference": dr},
                "code": {"coding": [{"system": CARE_ACTIVITY, "code": "risk-attestation"}]},
                "executionPeriod": {"start": f"{consent_date}T09:30:00-05:00"},
            },
        ),
    ]
    for back in range(1, 7):  # charge items for the previous six months
        m = month.shift(-back)
        out.append(
            _entry(
                _urn(),
                {
                    "resourceType": "ChargeItem",
                    "status": "billed",
                    "subject": ref,
                    "code": {"coding": [{"system": CPT, "code": "99490"}]},
                    "occurrenceDateTime": f"{m}-28T12:00:00-05:00",
                    "performer": [{"actor": {"reference": dr}}],
                },
            )
        )
    for m, count in ((month, entries_per_month), (month.previous(), entries_per_month * 2 // 3)):
        for i in range(count):
            day = 1 + i % min(27, m.last_day.day - 1)
            hour = 8 + (i // 27) * 3 + rng.randint(0, 1)
            minutes = rng.randint(2, 9)
            start = f"{m}-{day:02d}T{hour:02d}:00:00-05:00"
            enc = _urn()
            code, note = ACTIVITIES[rng.randrange(len(ACTIVITIES))]
            out.append(
                _entry(
                    enc,
                    {
                        "resourceType": "Encounter",
                        "status": "finished",
                        "class": {"system": ACT, "code": "VR"},
                        "type": [{"coding": [{"system": CARE_PROGRAM, "code": "ccm"}]}],
                        "subject": ref,
                        "participant": [{"individual": {"reference": rn}}],
                        "period": {"start": start, "end": f"{m}-{day:02d}T{hour:02d}:{minutes:02d}:00-05:00"},
                        "length": {
                            "value": minutes,
                            "unit": "min",
                            "system": "http://unitsofmeasure.org",
                            "code": "min",
                        },
                    },
                )
            )
            out.append(
                _entry(
                    _urn(),
                    {
                        "resourceType": "Task",
                        "status": "completed",
                        "intent": "order",
                        "for": ref,
                        "encounter": {"reference": enc},
                        "owner": {"reference": rn},
                        "code": {"coding": [{"system": CARE_ACTIVITY, "code": code}]},
                        "executionPeriod": {"start": start},
                        "note": [{"text": note}],
                    },
                )
            )
    return {"resourceType": "Bundle", "type": "transaction", "entry": out}, tag


def seed(client: FhirClient, patients: int, month: Month, entries: int) -> list[str]:
    """Seed the server; returns the patient ids."""
    rng = random.Random(20261123)
    dr = client.create({"resourceType": "Practitioner", "name": [{"family": "Billing", "given": ["Dana"]}]})
    rn = client.create({"resourceType": "Practitioner", "name": [{"family": "Nurse", "given": ["Robin"]}]})
    ids = []
    for _ in range(patients):
        bundle, tag = patient_bundle(
            rng, month, f"Practitioner/{dr['id']}", f"Practitioner/{rn['id']}", entries
        )
        client.transaction(bundle)
        [patient] = client.search("Patient", {"identifier": f"urn:bench|{tag}"})
        ids.append(patient["id"])
    return ids


def naive_verdict(client: FhirClient, patient_id: str, month: Month, tz: str, page: int) -> Any:
    """One sequential search per type, small pages, every page followed, no batch, no date filters."""
    resources = [client.read("Patient", patient_id)]
    for rtype in NAIVE_TYPES:
        resources += client.search(rtype, {"patient": patient_id, "_count": str(page)})
    return evaluate(read_facts(resources, patient_id, tz), month, tz=tz)


def _timed(fn: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def _too_long(signum: int, frame: object) -> None:
    raise TimeoutError("the benchmark ran longer than --max-seconds; stopping")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=8)
    parser.add_argument("--entries", type=int, default=30, help="time entries per patient in the month")
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--naive-count", type=int, default=10, help="_count of the naive client")
    parser.add_argument("--month", default="2026-10")
    parser.add_argument("--tz", default="America/Chicago")
    parser.add_argument("--max-seconds", type=int, default=600, help="abort if the run takes longer")
    args = parser.parse_args(argv)
    if not 1 <= args.patients <= 200 or not 1 <= args.entries <= 200:
        parser.error("--patients and --entries must be between 1 and 200")
    month = Month.parse(args.month)
    signal.signal(signal.SIGALRM, _too_long)
    signal.alarm(args.max_seconds)

    server = start_sekmet()
    try:
        t0 = time.perf_counter()
        ids = seed(FhirClient(server.base, timeout=60), args.patients, month, args.entries)
        print(f"seeded {len(ids)} patients in {time.perf_counter() - t0:.1f} s on {server.base}")
        origin = server.base.rsplit("/fhir", 1)[0]
        with LatencyProxy(origin, args.latency_ms / 1000) as proxy:
            base = f"{proxy.origin}/fhir"
            ours, naive = FhirClient(base, timeout=30), FhirClient(base, timeout=30)
            patient_month(ours, ids[0], month, tz=args.tz)  # warm up connections and server caches
            naive_verdict(naive, ids[0], month, args.tz, args.naive_count)
            rows = []
            for pid in ids:
                before = ours.round_trips
                t_ours, v_ours = _timed(lambda pid=pid: patient_month(ours, pid, month, tz=args.tz))
                trips_ours = ours.round_trips - before
                before = naive.round_trips
                t_naive, v_naive = _timed(
                    lambda pid=pid: naive_verdict(naive, pid, month, args.tz, args.naive_count)
                )
                trips_naive = naive.round_trips - before
                same = (v_ours.status, v_ours.minutes, v_ours.codes) == (
                    v_naive.status,
                    v_naive.minutes,
                    v_naive.codes,
                )
                rows.append((t_ours, trips_ours, t_naive, trips_naive, same, v_ours.status))
    finally:
        server.cleanup()
        signal.alarm(0)

    print(
        f"\nlatency {args.latency_ms:.0f} ms per request; {args.entries} time entries/patient this month "
        f"(+{args.entries * 2 // 3} last month); naive _count={args.naive_count}"
    )
    print(f"{'patient':>8} {'ours ms':>9} {'trips':>6} {'naive ms':>9} {'trips':>6}  same verdict  status")
    for i, (t_o, r_o, t_n, r_n, same, status) in enumerate(rows, 1):
        agree = "yes" if same else "NO"
        print(f"{i:>8} {t_o * 1000:>9.0f} {r_o:>6} {t_n * 1000:>9.0f} {r_n:>6}  {agree:>12}  {status}")
    med_ours = statistics.median(r[0] for r in rows)
    med_naive = statistics.median(r[2] for r in rows)
    print(f"median time-to-verdict: ours {med_ours * 1000:.0f} ms, naive {med_naive * 1000:.0f} ms")
    if not all(r[4] for r in rows):
        print("WARNING: the two clients disagree on some verdicts")
    trips = max(r[1] for r in rows)
    naive_trips = min(r[3] for r in rows)
    print(f"round_trips={trips} naive_round_trips={naive_trips} speedup={med_naive / med_ours:.2f}")
    return 0 if all(r[4] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
