"""The readiness fetch against a hand-written in-memory FHIR fake (no HTTP, no mock patching)."""

from __future__ import annotations

import importlib.util
from typing import Any
from urllib.parse import parse_qsl

import pytest

from fhir_mapping.reader import read_facts
from rules.month import BadMonth, BadTimezone
from smart_app.fhir.client import (
    BatchResult,
    FhirForbidden,
    FhirNotFound,
    FhirUnauthorized,
)
from smart_app.readiness.fetch import VISIT_CODES, fetch_patient_data, fetch_patient_resources
from smart_app.readiness.use_case import patient_month
from tests.support.fake_fhir import FakeFhir

PID = "p1"
MONTH = "2026-10"
TZ = "America/Chicago"
CARE_PROGRAM = "https://ccm-ready.org/fhir/CodeSystem/care-program"
CARE_ACTIVITY = "https://ccm-ready.org/fhir/CodeSystem/care-activity"
CPT = "http://www.ama-assn.org/go/cpt"
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
def _te(rid: str, day: int, minutes: int, patient: str = PID) -> dict[str, Any]:
    start = f"2026-{day // 100:02d}-{day % 100:02d}T09:00:00-05:00"
    return {
        "resourceType": "Encounter",
        "id": rid,
        "status": "finished",
        "class": {"system": ACT, "code": "VR"},
        "type": [{"coding": [{"system": CARE_PROGRAM, "code": "ccm"}]}],
        "subject": {"reference": f"Patient/{patient}"},
        "participant": [{"individual": {"reference": "Practitioner/rn"}}],
        "period": {"start": start, "end": start.replace("T09:00", f"T09:{minutes:02d}")},
        "length": {"value": minutes, "unit": "min", "system": "http://unitsofmeasure.org", "code": "min"},
    }


def _task(rid: str, code: str, encounter: str | None = None, when: str = "2026-10-05T09:00:00-05:00") -> dict:
    task: dict[str, Any] = {
        "resourceType": "Task",
        "id": rid,
        "status": "completed",
        "intent": "order",
        "code": {"coding": [{"system": CARE_ACTIVITY, "code": code}]},
        "for": {"reference": f"Patient/{PID}"},
        "owner": {"reference": "Practitioner/dr"},
        "executionPeriod": {"start": when},
        "note": [{"text": "Called the patient about medications."}],
    }
    if encounter:
        task["encounter"] = {"reference": f"Encounter/{encounter}"}
    return task


def world() -> list[dict[str, Any]]:
    """One CCM patient (old consent and visit, October time entries) and a neighbour's data."""
    pat = {"reference": f"Patient/{PID}"}
    return [
        {"resourceType": "Patient", "id": PID, "generalPractitioner": [{"reference": "Practitioner/dr"}]},
        {
            "resourceType": "Condition",
            "id": "c1",
            "subject": pat,
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E11.9"}]},
        },
        {
            "resourceType": "Condition",
            "id": "c2",
            "subject": pat,
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "I10"}]},
        },
        {
            "resourceType": "Consent",
            "id": "k1",
            "status": "active",
            "patient": pat,
            "category": [{"coding": [{"system": CARE_PROGRAM, "code": "ccm"}]}],
            "dateTime": "2023-03-10",
        },
        {
            "resourceType": "CarePlan",
            "id": "cp1",
            "status": "active",
            "intent": "plan",
            "subject": pat,
            "category": [{"coding": [{"system": CARE_PROGRAM, "code": "ccm"}]}],
            "period": {"start": "2023-03-10"},
        },
        {
            "resourceType": "Communication",
            "id": "m1",
            "status": "completed",
            "subject": pat,
            "about": [{"reference": "CarePlan/cp1"}],
            "sent": "2023-03-12T10:00:00-05:00",
        },
        {
            "resourceType": "Encounter",
            "id": "visit",
            "status": "finished",
            "class": {"system": ACT, "code": "AMB"},
            "type": [{"coding": [{"system": CPT, "code": "99214"}]}],
            "subject": pat,
            "participant": [{"individual": {"reference": "Practitioner/dr"}}],
            "period": {"start": "2023-02-01T10:00:00-06:00", "end": "2023-02-01T10:30:00-06:00"},
        },
        {
            "resourceType": "Encounter",
            "id": "stay",
            "status": "in-progress",
            "class": {"system": ACT, "code": "IMP"},
            "subject": pat,
            "period": {"start": "2026-10-20T08:00:00-05:00"},
        },
        _te("te1", 1005, 12),
        _te("te2", 1014, 10),
        _te("te3", 1028, 15),
        _te("sep", 910, 30),  # September: outside the month
        _te("nbr", 1010, 30, patient="p2"),  # the neighbour's October
        _task("t1", "medication-review", "te1"),
        _task("t2", "care-coordination", "te2"),
        _task("t3", "medication-review", "te3"),
        _task("tsep", "medication-review", "sep"),
        _task("risk", "risk-attestation", when="2023-03-10T09:30:00-05:00"),
        {
            "resourceType": "ChargeItem",
            "id": "ch1",
            "status": "billed",
            "subject": pat,
            "code": {"coding": [{"system": CPT, "code": "99490"}]},
            "occurrenceDateTime": "2026-10-31T12:00:00-05:00",
            "performer": [{"actor": {"reference": "Practitioner/dr"}}],
        },
        {
            "resourceType": "ChargeItem",
            "id": "ch-old",
            "status": "billed",
            "subject": pat,
            "code": {"coding": [{"system": CPT, "code": "99490"}]},
            "occurrenceDateTime": "2025-01-31T12:00:00-05:00",
        },
    ]


EXPECTED = {
    "Patient/p1",
    "Condition/c1",
    "Condition/c2",
    "Consent/k1",
    "CarePlan/cp1",
    "Communication/m1",
    "Encounter/visit",
    "Encounter/stay",
    "Encounter/te1",
    "Encounter/te2",
    "Encounter/te3",
    "Task/t1",
    "Task/t2",
    "Task/t3",
    "Task/risk",
    "ChargeItem/ch1",
}


def keys(resources: list[dict[str, Any]]) -> set[str]:
    return {f"{r['resourceType']}/{r['id']}" for r in resources}


def test_one_batch_carries_every_search() -> None:
    fake = FakeFhir(world())
    fetched = fetch_patient_data(fake, PID, MONTH, TZ)
    assert fake.round_trips == fetched.round_trips == 1
    assert fetched.used_batch and not fetched.problems and not fake.gets
    [requests_] = fake.batches
    assert requests_[0] == f"Patient/{PID}"
    searches = [dict(parse_qsl(u.partition("?")[2])) | {"type_": u.partition("?")[0]} for u in requests_[1:]]
    assert sorted(s["type_"] for s in searches) == sorted(
        ["Condition", "CarePlan", "Consent", "Encounter", "Encounter", "Task", "Communication", "ChargeItem",
         "Claim", "ExplanationOfBenefit", "DocumentReference"]
    )
    assert all(s["patient"] == PID and s["_count"] == "500" for s in searches)
    multi = {u.partition("?")[0] + str(sorted(parse_qsl(u.partition("?")[2]))) for u in requests_}
    month_pairs = [
        ("_count", "500"),
        ("_include", "Encounter:participant"),
        ("_include:iterate", "PractitionerRole:practitioner"),
        ("_revinclude", "Task:encounter"),
        ("date", "ge2026-09-29"),
        ("date", "lt2026-11-03"),
        ("patient", PID),
    ]
    assert f"Encounter{sorted(month_pairs)}" in multi
    visits = [s for s in searches if s["type_"] == "Encounter" and "type" in s]
    assert len(visits) == 1 and set(visits[0]["type"].split(",")) == set(VISIT_CODES)
    assert visits[0]["date"] == "lt2026-11-03"  # no lower bound: an old consent needs no second look-up


def test_the_month_resources_come_back_once_each() -> None:
    resources = fetch_patient_resources(FakeFhir(world()), PID, MONTH, TZ)
    assert keys(resources) == EXPECTED
    assert len(resources) == len(EXPECTED)


def test_resources_feed_read_facts() -> None:
    resources = fetch_patient_resources(FakeFhir(world()), PID, MONTH, TZ)
    facts = read_facts(resources, PID, TZ)
    assert facts.patient.id == "Patient/p1"
    assert {c.id for c in facts.conditions} == {"Condition/c1", "Condition/c2"}
    assert [c.id for c in facts.consents] == ["Consent/k1"]
    assert [v.id for v in facts.visits] == ["Encounter/visit"]
    assert [s.id for s in facts.stays] == ["Encounter/stay"]
    assert sorted((t.id, t.minutes) for t in facts.time_entries) == [
        ("Encounter/te1", 12),
        ("Encounter/te2", 10),
        ("Encounter/te3", 15),
    ]
    assert all(t.task_ids for t in facts.time_entries)  # the Tasks arrived with their time entries
    assert [a.kind for a in facts.attestations] == ["risk-attestation"]
    assert [b.id for b in facts.billed] == ["ChargeItem/ch1"]
    assert facts.care_plans[0].shared_with_patient_at is not None


def test_a_server_without_batch_gets_concurrent_searches() -> None:
    fake = FakeFhir(world(), batch_ok=False)
    fetched = fetch_patient_data(fake, PID, MONTH, TZ)
    assert not fetched.used_batch
    assert keys(fetched.resources) == EXPECTED
    assert len(fake.gets) == 12 and fake.round_trips == 13
    assert f"Patient/{PID}" in fake.gets


def test_rejected_parameters_fall_back_to_simpler_searches() -> None:
    fake = FakeFhir(world(), reject=frozenset({"occurrence", "_revinclude"}))
    fetched = fetch_patient_data(fake, PID, MONTH, TZ)
    assert not fetched.problems
    # ChargeItem without the date filter brings the old one too; all Tasks instead of the month's
    assert keys(fetched.resources) == EXPECTED | {"ChargeItem/ch-old", "Task/tsep"}
    assert sorted(u.partition("?")[0] for u in fake.gets) == ["ChargeItem", "Encounter", "Task"]
    assert fake.round_trips == 4


def test_an_optional_search_that_fails_becomes_a_skipped_entry() -> None:
    fake = FakeFhir(world(), forbidden=frozenset({"ChargeItem"}))
    fetched = fetch_patient_data(fake, PID, MONTH, TZ)
    assert [p.resource for p in fetched.problems] == ["ChargeItem?"]
    assert "HTTP 403" in fetched.problems[0].reason
    assert keys(fetched.resources) == EXPECTED - {"ChargeItem/ch1"}


def test_a_required_search_that_fails_raises_a_readable_error() -> None:
    with pytest.raises(FhirForbidden, match=r"^Could not fetch conditions: HTTP 403"):
        fetch_patient_data(FakeFhir(world(), forbidden=frozenset({"Condition"})), PID, MONTH, TZ)


def test_a_missing_patient_is_not_found() -> None:
    with pytest.raises(FhirNotFound):
        fetch_patient_resources(FakeFhir(world()), "nobody", MONTH, TZ)


def test_unauthorised_batch_propagates_for_the_session_to_refresh() -> None:
    class Expired(FakeFhir):
        def batch(self, requests_: list[str]) -> list[BatchResult]:
            self.round_trips += 1
            raise FhirUnauthorized(401, "HTTP 401 from FHIR server: token expired")

    fake = Expired(world())
    with pytest.raises(FhirUnauthorized):
        fetch_patient_resources(fake, PID, MONTH, TZ)
    assert fake.round_trips == 1 and not fake.gets  # no fallback storm with a dead token


def test_another_patients_data_is_dropped_even_if_the_server_ignores_patient() -> None:
    resources = fetch_patient_resources(FakeFhir(world(), ignore_patient=True), PID, MONTH, TZ)
    assert "Encounter/nbr" not in keys(resources)
    assert keys(resources) >= EXPECTED


@pytest.mark.parametrize(
    ("month", "tz", "error"),
    [
        ("2026-13", TZ, BadMonth),
        ("Oct 2026", TZ, BadMonth),
        (MONTH, "Mars/Olympus", BadTimezone),
    ],
)
def test_bad_arguments_fail_before_any_request(month: str, tz: str, error: type[Exception]) -> None:
    fake = FakeFhir(world())
    with pytest.raises(error):
        fetch_patient_resources(fake, PID, month, tz)
    assert fake.round_trips == 0


@pytest.mark.parametrize("pid", ["", "Patient/p1", "a" * 300])
def test_bad_patient_ids_are_refused(pid: str) -> None:
    with pytest.raises(ValueError, match="bare FHIR id"):
        fetch_patient_resources(FakeFhir(world()), pid, MONTH, TZ)


@pytest.mark.skipif(
    importlib.util.find_spec("rules.evaluate") is None, reason="rules.evaluate not written yet"
)
def test_patient_month_gives_a_verdict_with_bad_data_and_failed_searches_skipped() -> None:
    data = [
        *world(),
        {
            "resourceType": "Condition",
            "id": "broken",
            "subject": {"reference": f"Patient/{PID}"},
            "onsetDateTime": "not a date",
        },
    ]
    verdict = patient_month(FakeFhir(data, forbidden=frozenset({"ChargeItem"})), PID, MONTH, tz=TZ)
    assert verdict.month == MONTH
    assert verdict.patient.endswith(PID)
    skipped = {s.resource for s in verdict.skipped}
    assert "ChargeItem?" in skipped
    assert "Condition/broken" in skipped
