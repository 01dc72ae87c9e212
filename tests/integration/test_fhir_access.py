"""FhirClient and the readiness fetch against a real sekmet-fhir server."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import pytest

from rules.verdict import Verdict
from smart_app.fhir.client import BatchResult, FhirClient, FhirError, FhirNotFound
from smart_app.readiness.fetch import fetch_patient_data, fetch_patient_resources
from smart_app.readiness.use_case import patient_month

pytestmark = pytest.mark.integration

CARE_PROGRAM = "https://ccm-ready.org/fhir/CodeSystem/care-program"
CARE_ACTIVITY = "https://ccm-ready.org/fhir/CodeSystem/care-activity"
CPT = "http://www.ama-assn.org/go/cpt"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
MONTH = "2026-10"
TZ = "America/Chicago"


def _entry(ref: str, resource: dict[str, Any]) -> dict[str, Any]:
    return {
        "fullUrl": ref,
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"]},
    }


def _time_entry(pat: str, who: str, start: str, end: str, minutes: int) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": ACT, "code": "VR"},
        "type": [{"coding": [{"system": CARE_PROGRAM, "code": "ccm"}]}],
        "subject": {"reference": pat},
        "participant": [{"individual": {"reference": who}}],
        "period": {"start": start, "end": end},
        "length": {"value": minutes, "unit": "min", "system": "http://unitsofmeasure.org", "code": "min"},
    }


def _task(pat: str, enc: str, who: str, code: str, when: str) -> dict[str, Any]:
    return {
        "resourceType": "Task",
        "status": "completed",
        "intent": "order",
        "code": {"coding": [{"system": CARE_ACTIVITY, "code": code}]},
        "for": {"reference": pat},
        "encounter": {"reference": enc},
        "owner": {"reference": who},
        "executionPeriod": {"start": when},
        "note": [{"text": "Reviewed medications by phone."}],
    }


def patient_transaction(tag: str) -> dict[str, Any]:
    """A CCM patient: conditions, old consent + visit, care plan, October time entries, tasks, etc."""
    u = {k: f"urn:uuid:{uuid.uuid4()}" for k in ("pat", "dr", "rn", "plan", "visit", "other")}
    pat, dr, rn = u["pat"], u["dr"], u["rn"]
    entries = [
        _entry(dr, {"resourceType": "Practitioner", "name": [{"family": "Doctor"}]}),
        _entry(rn, {"resourceType": "Practitioner", "name": [{"family": "Nurse"}]}),
        _entry(
            pat,
            {
                "resourceType": "Patient",
                "identifier": [{"system": "urn:test", "value": tag}],
                "name": [{"family": "Test", "given": ["Pat"]}],
                "birthDate": "1950-01-01",
                "generalPractitioner": [{"reference": dr}],
            },
        ),
        _entry(u["other"], {"resourceType": "Patient", "name": [{"family": "Other"}]}),
    ]
    for code in ("E11.9", "I10"):
        entries.append(
            _entry(
                f"urn:uuid:{uuid.uuid4()}",
                {
                    "resourceType": "Condition",
                    "subject": {"reference": pat},
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
    entries += [
        _entry(
            u["visit"],
            {
                "resourceType": "Encounter",
                "status": "finished",
                "class": {"system": ACT, "code": "AMB"},
                "type": [{"coding": [{"system": CPT, "code": "99214"}]}],
                "subject": {"reference": pat},
                "participant": [{"individual": {"reference": dr}}],
                "period": {"start": "2024-02-01T10:00:00-06:00", "end": "2024-02-01T10:30:00-06:00"},
            },
        ),
        _entry(
            f"urn:uuid:{uuid.uuid4()}",
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
                "patient": {"reference": pat},
                "dateTime": "2024-03-10T09:00:00-05:00",
                "performer": [{"reference": rn}],
                "policyRule": {"text": "CMS CCM consent"},
                "provision": {
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
                            "reference": {"reference": dr},
                        }
                    ]
                },
            },
        ),
        _entry(
            u["plan"],
            {
                "resourceType": "CarePlan",
                "status": "active",
                "intent": "plan",
                "subject": {"reference": pat},
                "category": [{"coding": [{"system": CARE_PROGRAM, "code": "ccm"}]}],
                "period": {"start": "2024-03-10"},
                "author": {"reference": dr},
            },
        ),
        _entry(
            f"urn:uuid:{uuid.uuid4()}",
            {
                "resourceType": "Communication",
                "status": "completed",
                "subject": {"reference": pat},
                "about": [{"reference": u["plan"]}],
                "sent": "2024-03-12T10:00:00-05:00",
            },
        ),
        _entry(
            f"urn:uuid:{uuid.uuid4()}",
            {
                "resourceType": "Task",
                "status": "completed",
                "intent": "order",
                "code": {"coding": [{"system": CARE_ACTIVITY, "code": "risk-attestation"}]},
                "for": {"reference": pat},
                "owner": {"reference": dr},
                "executionPeriod": {"start": "2024-03-10T09:30:00-05:00"},
            },
        ),
        _entry(
            f"urn:uuid:{uuid.uuid4()}",
            {
                "resourceType": "ChargeItem",
                "status": "billed",
                "subject": {"reference": pat},
                "code": {"coding": [{"system": CPT, "code": "99490"}]},
                "occurrenceDateTime": "2026-10-31T12:00:00-05:00",
                "performer": [{"actor": {"reference": dr}}],
            },
        ),
        _entry(
            f"urn:uuid:{uuid.uuid4()}",
            {  # inpatient stay still open: matches the month window
                "resourceType": "Encounter",
                "status": "in-progress",
                "class": {"system": ACT, "code": "IMP"},
                "subject": {"reference": pat},
                "period": {"start": "2026-10-20T08:00:00-05:00"},
            },
        ),
        _entry(
            f"urn:uuid:{uuid.uuid4()}",
            _time_entry(  # September: outside the month window
                pat, rn, "2026-09-10T09:00:00-05:00", "2026-09-10T09:30:00-05:00", 30
            ),
        ),
        _entry(
            f"urn:uuid:{uuid.uuid4()}",
            _time_entry(  # another patient's October time
                u["other"], rn, "2026-10-10T09:00:00-05:00", "2026-10-10T09:30:00-05:00", 30
            ),
        ),
    ]
    for day, minutes in ((5, 12), (14, 10), (28, 15)):
        enc = f"urn:uuid:{uuid.uuid4()}"
        start = f"2026-10-{day:02d}T09:00:00-05:00"
        entries.append(
            _entry(enc, _time_entry(pat, rn, start, f"2026-10-{day:02d}T09:{minutes:02d}:00-05:00", minutes))
        )
        entries.append(_entry(f"urn:uuid:{uuid.uuid4()}", _task(pat, enc, rn, "medication-review", start)))
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _seed(client: FhirClient) -> str:
    tag = uuid.uuid4().hex
    answer = client.transaction(patient_transaction(tag))
    assert answer["type"] == "transaction-response"
    found = client.search("Patient", {"identifier": f"urn:test|{tag}"})
    assert len(found) == 1
    return found[0]["id"]


@pytest.fixture(scope="module")
def client(sekmet) -> FhirClient:
    return FhirClient(sekmet.base, backoff=0.01)


@pytest.fixture(scope="module")
def patient_id(client: FhirClient) -> str:
    return _seed(client)


def _by_type(resources: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in resources:
        out[r["resourceType"]] = out.get(r["resourceType"], 0) + 1
    return out


def test_fetch_gets_everything_in_at_most_two_round_trips(client: FhirClient, patient_id: str) -> None:
    before = client.round_trips
    fetched = fetch_patient_data(client, patient_id, MONTH, TZ)
    assert client.round_trips - before <= 2
    assert fetched.round_trips == client.round_trips - before
    assert fetched.used_batch and not fetched.problems
    counts = _by_type(fetched.resources)
    # 3 October time entries + the open inpatient stay + the 2024 visit; not September, not the other patient
    assert counts == {
        "Patient": 1,
        "Condition": 2,
        "Consent": 1,
        "CarePlan": 1,
        "Communication": 1,
        "Encounter": 5,
        "Task": 4,
        "ChargeItem": 1,
        "Practitioner": 2,  # who took part in the encounters (_include), for names without a second request
    }
    subjects = {r["subject"]["reference"] for r in fetched.resources if r["resourceType"] == "Encounter"}
    assert subjects == {f"Patient/{patient_id}"}
    starts = sorted(r["period"]["start"][:7] for r in fetched.resources if r["resourceType"] == "Encounter")
    assert starts == ["2024-02", "2026-10", "2026-10", "2026-10", "2026-10"]


def test_fetch_resources_is_the_plain_list(client: FhirClient, patient_id: str) -> None:
    resources = fetch_patient_resources(client, patient_id, MONTH, TZ)
    assert len(resources) == 18
    assert len({(r["resourceType"], r["id"]) for r in resources}) == 18


def test_unknown_patient_is_not_found(client: FhirClient) -> None:
    with pytest.raises(FhirNotFound, match="HTTP 404"):
        fetch_patient_resources(client, "no-such-patient", MONTH, TZ)


def test_paging_with_small_count_follows_every_page(client: FhirClient, patient_id: str) -> None:
    before = client.round_trips
    encounters = client.search("Encounter", {"patient": patient_id, "_count": "2"})
    assert len(encounters) == 6  # 4 time entries, the stay, the visit
    assert len({e["id"] for e in encounters}) == 6
    assert client.round_trips - before == 3


def test_batch_paging_inside_an_entry(client: FhirClient, patient_id: str) -> None:
    results = client.batch([f"Task?patient={patient_id}&_count=1", "Patient/missing-one"])
    assert results[0].ok and len(results[0].resources) == 4
    assert results[1].status == 404 and "HTTP 404" in results[1].message
    assert isinstance(results[1].error(), FhirNotFound)


def test_unknown_search_parameter_gives_a_readable_error(client: FhirClient) -> None:
    with pytest.raises(FhirError) as info:
        client.search("Encounter", {"foo": "bar"})
    assert info.value.status == 400
    assert info.value.message.startswith("HTTP 400 from FHIR server: ")
    assert "foo" in info.value.message


def test_create_read_and_conditional_create(client: FhirClient) -> None:
    ident = uuid.uuid4().hex
    practitioner = {"resourceType": "Practitioner", "identifier": [{"system": "urn:test", "value": ident}]}
    made = client.create(practitioner, if_none_exist=f"identifier=urn:test|{ident}")
    again = client.create(practitioner, if_none_exist=f"identifier=urn:test|{ident}")
    assert made["id"] == again["id"]
    assert client.read("Practitioner", made["id"])["identifier"][0]["value"] == ident
    assert client.capabilities()["resourceType"] == "CapabilityStatement"


def test_invalid_resource_gives_a_readable_error(client: FhirClient) -> None:
    with pytest.raises(FhirError) as info:
        client.create({"resourceType": "Encounter", "status": "finished", "bogus": 1})
    assert info.value.status == 400
    assert "bogus" in info.value.message


def test_patient_month_returns_a_verdict(client: FhirClient, patient_id: str) -> None:
    verdict = patient_month(client, patient_id, MONTH, tz=TZ)
    assert isinstance(verdict, Verdict)
    assert verdict.month == MONTH and verdict.patient.endswith(patient_id)
    # 12 + 10 + 15 minutes logged; the 28th falls inside the open inpatient stay and does not count
    assert verdict.minutes.clinical_staff == 22
    assert verdict.skipped == ()


class NoBatchClient(FhirClient):
    """A real client for a server that refuses batches (as some EHR gateways do)."""

    def batch(self, requests_: Sequence[str], *, follow_pages: bool = True) -> list[BatchResult]:
        self.round_trips += 1
        raise FhirError(405, "HTTP 405 from FHIR server: batch is not supported")


def test_without_batch_the_same_resources_come_from_concurrent_searches(sekmet, patient_id: str) -> None:
    client = NoBatchClient(sekmet.base, backoff=0.01)
    fetched = fetch_patient_data(client, patient_id, MONTH, TZ)
    assert not fetched.used_batch and not fetched.problems
    assert fetched.round_trips == 13  # the refused batch + 12 GETs
    reference = fetch_patient_resources(FhirClient(sekmet.base), patient_id, MONTH, TZ)
    assert sorted((r["resourceType"], r["id"]) for r in fetched.resources) == sorted(
        (r["resourceType"], r["id"]) for r in reference
    )
