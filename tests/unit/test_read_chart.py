"""fhir_mapping.read_chart: the care-plan editor's view of the chart, read leniently."""

from __future__ import annotations

from fhir_mapping.read_chart import (
    allergies,
    care_team,
    medicines,
    newest_ccm_plan,
    person_display,
    plan_references,
    text_of,
)

CCM = {"coding": [{"system": "https://ccm-ready.org/fhir/CodeSystem/care-program", "code": "ccm"}]}


def test_text_of_prefers_text_then_display_then_code() -> None:
    assert text_of({"text": " Metformin ", "coding": [{"display": "x"}]}) == "Metformin"
    assert text_of({"coding": [{"code": "123"}, {"display": "later"}]}) == "123"
    assert text_of("not a concept") == "" and text_of({}) == ""


def test_medicines_keep_those_being_taken_once() -> None:
    rows = [
        {"resourceType": "MedicationRequest", "medicationCodeableConcept": {"text": "Metformin"},
         "dosageInstruction": [{"text": "500 mg twice a day"}]},
        {"resourceType": "MedicationStatement", "status": "stopped",
         "medicationCodeableConcept": {"text": "Old"}},
        {"resourceType": "MedicationStatement", "medicationReference": {"display": "Lisinopril"}},
        {"resourceType": "MedicationRequest", "medicationCodeableConcept": {"text": "Metformin"},
         "dosageInstruction": [{"text": "500 mg twice a day"}]},
    ]
    assert medicines(rows) == ["Metformin (500 mg twice a day)", "Lisinopril"]


def test_allergies_and_care_team() -> None:
    assert allergies([{"resourceType": "AllergyIntolerance", "code": {"text": "Penicillin"}},
                      {"resourceType": "AllergyIntolerance", "code": 5}]) == ["Penicillin"]
    team = care_team([{"resourceType": "CareTeam", "participant": [
        {"member": {"reference": "Practitioner/1"}, "role": [{"text": "PCP"}]},
        {"member": {"display": "no reference"}}, "junk"]}])
    assert team == {"Practitioner/1": "PCP"}


def test_newest_active_ccm_plan_and_its_references() -> None:
    old = {"resourceType": "CarePlan", "id": "a", "status": "active", "category": [CCM],
           "meta": {"lastUpdated": "2026-01-01T00:00:00Z"}}
    new = {**old, "id": "b", "meta": {"lastUpdated": "2026-02-01T00:00:00Z"},
           "addresses": [{"reference": "Condition/1"}, {"display": "x"}], "goal": [{"reference": "Goal/g"}]}
    revoked = {**new, "id": "c", "status": "revoked", "meta": {"lastUpdated": "2026-03-01T00:00:00Z"}}
    plan = newest_ccm_plan([old, revoked, new])
    assert plan is not None and plan["id"] == "b"
    assert plan_references(plan, "addresses") == ["Condition/1"]
    assert plan_references(plan, "goal") == ["Goal/g"]
    assert newest_ccm_plan([{"resourceType": "CarePlan", "status": "active"}]) is None


def test_person_display() -> None:
    doc = {"resourceType": "Practitioner", "name": [{"prefix": ["Dr."], "given": ["Ana"], "family": "Diaz"}]}
    assert person_display(doc, "Practitioner/1") == "Dr. Ana Diaz"
    assert person_display({"resourceType": "Practitioner"}, "Practitioner/1") == "Practitioner/1"
    role = {"resourceType": "PractitionerRole", "code": [{"text": "Care manager"}]}
    assert person_display(role, "PractitionerRole/2") == "Care manager"
