"""Writes bound to the launch patient, against the real sekmet-fhir (issue 12: items 1 and 2).

1. A session for patient A must never update patient B's CarePlan or Goals (read before update, refuse).
2. Our identifiers collide across patients (a client picks entry ids and plan keys): conditional creates
   must match only the launch patient's resources, Goal ids must differ per patient, and a Provenance
   may point only at what its own transaction wrote.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from fhir_mapping.write_careplan import CARE_PLAN_ID, care_plan_transaction
from fhir_mapping.write_time import TIME_ENTRY_ID, entry_transaction, new_entry_id
from smart_app.fhir.client import FhirClient
from smart_app.fhir.patient_scope import PatientScopedClient, PatientScopeError
from tests.integration.test_careplan import draft_for, form_of, opened, seed_patient, web, write
from tests.integration.test_writeback import GOOD_NOTE, NURSE, draft, entry_moment, new_patient, post_json
from tests.support.app import launched, open_launch
from tests.support.sekmet import SekmetServer

pytestmark = pytest.mark.integration


# ------------------------------------------------------------------ 1. another patient's CarePlan and Goals


def test_care_plan_form_naming_another_patients_plan_is_refused(sekmet: SekmetServer, tmp_path: Path) -> None:
    a, b = seed_patient(sekmet.base), seed_patient(sekmet.base)
    write(sekmet.base, draft_for(b), "plan-of-b")
    fhir = FhirClient(sekmet.base)
    (plan_b,) = fhir.search("CarePlan", {"patient": b["patient"]})
    app = web(sekmet, tmp_path)
    client = opened(app, sekmet.base, a["patient"])
    html = client.get("/care-plan").get_data(as_text=True)
    resp = client.post("/care-plan", data=form_of(html, a, plan_id=plan_b["id"], version="1"))
    assert resp.status_code == 403, resp.get_data(as_text=True)[:500]
    assert "not the launch patient" in resp.get_data(as_text=True)
    after = fhir.read("CarePlan", plan_b["id"])
    assert after["meta"]["versionId"] == "1" and after["subject"]["reference"] == f"Patient/{b['patient']}"


def test_scoped_client_reads_every_update_target_first(sekmet: SekmetServer) -> None:
    a, b = seed_patient(sekmet.base), seed_patient(sekmet.base)
    write(sekmet.base, draft_for(b), "plan-of-b-2")
    fhir = FhirClient(sekmet.base)
    (plan_b,) = fhir.search("CarePlan", {"patient": b["patient"]})
    goal_b = plan_b["goal"][0]["reference"].split("/")[1]
    scoped = PatientScopedClient(fhir, a["patient"])
    now = datetime.now(UTC).replace(microsecond=0)
    over_plan = care_plan_transaction(draft_for(a, plan_id=plan_b["id"], version="1"), plan_key="k",
                                      user=a["doctor"], recorded=now, pack_id="p", pack_version="1")
    with pytest.raises(PatientScopeError, match="another patient"):
        scoped.transaction(over_plan)
    over_goal = care_plan_transaction(draft_for(a), plan_key="k2", user=a["doctor"], recorded=now,
                                      pack_id="p", pack_version="1")
    over_goal["entry"][0]["request"]["url"] = f"Goal/{goal_b}"
    over_goal["entry"][0]["resource"]["id"] = goal_b
    with pytest.raises(PatientScopeError, match="another patient"):
        scoped.transaction(over_goal)
    assert fhir.read("CarePlan", plan_b["id"])["meta"]["versionId"] == "1"
    assert fhir.read("Goal", goal_b)["subject"]["reference"] == f"Patient/{b['patient']}"


# ------------------------------------------------------------------ 2. identifier collisions across patients


def test_time_entry_with_another_patients_entry_id_is_written_for_this_patient(
    sekmet: SekmetServer, tmp_path: Path
) -> None:
    fhir = FhirClient(sekmet.base)
    pa, pb = new_patient(fhir, "CollideA"), new_patient(fhir, "CollideB")
    shared_id = new_entry_id()
    start = entry_moment(5)
    fhir.transaction(entry_transaction(draft(pb, start, entry_id=shared_id), user=NURSE,
                                       recorded=datetime.now(UTC), pack_id="cms-pfs-2026", pack_version="t"))
    (enc_b,) = fhir.search("Encounter", {"identifier": f"{TIME_ENTRY_ID}|{shared_id}"})
    app = web(sekmet, tmp_path, OUTBOX_WORKER=False)
    client, csrf = launched(app, open_launch(sekmet.base, pa, NURSE))
    later = entry_moment(2)
    body = {"id": shared_id, "date": later.date().isoformat(), "start": later.strftime("%H:%M"),
            "minutes": "10", "note": GOOD_NOTE}
    resp = post_json(client, csrf, "/time", body)
    assert resp.status_code == 201, resp.get_json()
    assert not any(enc_b["id"] in r for r in resp.get_json()["resources"])  # not B's resource ids
    mine = fhir.search("Encounter", {"identifier": f"{TIME_ENTRY_ID}|{shared_id}", "patient": pa})
    assert len(mine) == 1 and mine[0]["id"] != enc_b["id"]
    assert fhir.read("Encounter", enc_b["id"])["meta"]["versionId"] == enc_b["meta"]["versionId"]
    provs_b = fhir.search("Provenance", {"target": f"Encounter/{enc_b['id']}"})
    assert len(provs_b) == 1  # B's own; none from A's session points at B's entry
    provs_a = fhir.search("Provenance", {"target": f"Encounter/{mine[0]['id']}"})
    assert len(provs_a) == 1
    assert f"Encounter/{mine[0]['id']}" in [t["reference"] for t in provs_a[0]["target"]]


def test_care_plan_with_another_patients_plan_key_gets_its_own_plan(
    sekmet: SekmetServer, tmp_path: Path
) -> None:
    a, b = seed_patient(sekmet.base), seed_patient(sekmet.base)
    write(sekmet.base, draft_for(b), "shared-plan-key")
    fhir = FhirClient(sekmet.base)
    (plan_b,) = fhir.search("CarePlan", {"patient": b["patient"]})
    provs_before = fhir.search("Provenance", {"target": f"CarePlan/{plan_b['id']}"})
    app = web(sekmet, tmp_path)
    client = opened(app, sekmet.base, a["patient"])
    html = client.get("/care-plan").get_data(as_text=True)
    resp = client.post("/care-plan", data=form_of(html, a, plan_key="shared-plan-key"))
    assert resp.status_code == 302, resp.get_data(as_text=True)[:500]
    (plan_a,) = fhir.search("CarePlan", {"patient": a["patient"]})
    assert plan_a["id"] != plan_b["id"]
    assert {"system": CARE_PLAN_ID, "value": "shared-plan-key"} in plan_a["identifier"]
    assert len(fhir.search("Provenance", {"target": f"CarePlan/{plan_b['id']}"})) == len(provs_before)
    assert fhir.read("CarePlan", plan_b["id"])["meta"]["versionId"] == "1"


def test_goal_ids_of_two_patients_saved_in_the_same_second_never_collide() -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    ids = []
    for patient in ("pa", "pb"):
        chart = {"patient": patient, "doctor": "Practitioner/d", "condition": f"Condition/c-{patient}"}
        bundle = care_plan_transaction(draft_for(chart), plan_key="same-key", user="Practitioner/d",
                                       recorded=now, pack_id="p", pack_version="1")
        ids.append({e["request"]["url"] for e in bundle["entry"] if e["request"]["url"].startswith("Goal/")})
    assert ids[0] and ids[1] and not ids[0] & ids[1]


def test_conditional_creates_without_the_patient_and_foreign_provenance_targets_are_refused() -> None:
    from smart_app.fhir.patient_scope import check_transaction

    task = {"resourceType": "Task", "for": {"reference": "Patient/pa"}}
    with pytest.raises(PatientScopeError, match="conditional create"):
        check_transaction({"entry": [{"fullUrl": "urn:uuid:1", "resource": task, "request": {
            "method": "POST", "url": "Task", "ifNoneExist": "identifier=s|x"}}]}, "pa")
    with pytest.raises(PatientScopeError, match="conditional create"):
        check_transaction({"entry": [{"fullUrl": "urn:uuid:1", "resource": task, "request": {
            "method": "POST", "url": "Task", "ifNoneExist": "identifier=s|x&patient=Patient/pb"}}]}, "pa")
    prov = {"resourceType": "Provenance", "target": [{"reference": "Encounter/of-b"}]}
    with pytest.raises(PatientScopeError, match="Provenance"):
        check_transaction({"entry": [
            {"fullUrl": "urn:uuid:1", "resource": task, "request": {"method": "POST", "url": "Task"}},
            {"fullUrl": "urn:uuid:2", "resource": prov, "request": {"method": "POST", "url": "Provenance"}},
        ]}, "pa")


# ------------------------------------------------------------ 3. reads: a search parameter the server ignores


def _care_team(client: FhirClient, patient_id: str, family: str) -> None:
    member = client.create({"resourceType": "Practitioner", "name": [{"family": family, "given": ["Team"]}]})
    client.create(
        {
            "resourceType": "CareTeam",
            "status": "active",
            "subject": {"reference": f"Patient/{patient_id}"},
            "participant": [{"member": {"reference": f"Practitioner/{member['id']}"}}],
        }
    )


def test_answers_naming_another_patient_are_dropped_even_when_the_server_ignores_the_parameter(
    sekmet: SekmetServer, tmp_path: Path
) -> None:
    a, b = seed_patient(sekmet.base), seed_patient(sekmet.base)
    fhir = FhirClient(sekmet.base)
    _care_team(fhir, a["patient"], "Ownteam")
    _care_team(fhir, b["patient"], "Otherpatientteam")
    scoped = PatientScopedClient(fhir, a["patient"])
    (got,) = scoped.batch([f"CareTeam?subject=Patient/{a['patient']}"])
    subjects = {r["subject"]["reference"] for r in got.resources}
    assert subjects == {f"Patient/{a['patient']}"}
    (by_patient,) = scoped.batch([f"CareTeam?patient={a['patient']}"])
    assert {r["subject"]["reference"] for r in by_patient.resources} == {f"Patient/{a['patient']}"}
    html = opened(web(sekmet, tmp_path), sekmet.base, a["patient"]).get("/care-plan").get_data(as_text=True)
    assert "Ownteam" in html and "Otherpatientteam" not in html


@pytest.mark.parametrize(
    ("resource", "other"),
    [
        ({"resourceType": "CareTeam", "subject": {"reference": "Patient/b"}}, True),
        ({"resourceType": "CareTeam", "subject": {"reference": "https://ehr.example/fhir/Patient/b"}}, True),
        ({"resourceType": "Consent", "patient": {"reference": "Patient/b/_history/3"}}, True),
        ({"resourceType": "Account", "subject": [{"reference": "Patient/a"}, {"reference": "Patient/b"}]},
         True),
        ({"resourceType": "Patient", "id": "b"}, True),
        ({"resourceType": "Consent", "patient": {"reference": "Patient/a/_history/3"}}, False),
        ({"resourceType": "CareTeam", "subject": {"reference": "https://ehr.example/fhir/Patient/a"}}, False),
        ({"resourceType": "CareTeam", "subject": {"reference": "Group/g1"}}, False),
        ({"resourceType": "Task", "for": {"identifier": {"value": "MRN1"}}}, False),
        ({"resourceType": "Practitioner", "id": "p"}, False),
        ({"resourceType": "Patient", "id": "a"}, False),
    ],
)
def test_which_answers_name_another_patient(resource: dict[str, Any], other: bool) -> None:
    from smart_app.fhir.patient_scope import names_other_patient

    assert names_other_patient(resource, "a") is other
