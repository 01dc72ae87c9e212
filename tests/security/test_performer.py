"""Who did the work is a verified user (issue 12, item 3); real oauth2-mock-server and sekmet-fhir.

Without a verified fhirUser the performer the form names must be on the patient's care team as the FHIR
server has it; open mode stays writable for testers but the Provenance says the performer is unverified.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fhir_mapping.write_time import TIME_ENTRY_ID
from smart_app.context import LaunchContext
from smart_app.fhir.client import FhirClient
from tests.integration.test_writeback import GOOD_NOTE, entry_moment, post_json
from tests.security.support import launch, oauth_ready, smart_app
from tests.support.app import launched
from tests.support.oauth import OAuthServer
from tests.support.oauth import oauth_server as oauth_server  # re-exported fixture
from tests.support.sekmet import SekmetServer

pytestmark = [pytest.mark.integration, pytest.mark.oauth]
# fhir_mapping.write_provenance.EXT_PERFORMER_VERIFICATION (spelled out: the test must also run on old code)
EXT_PERFORMER_VERIFICATION = "https://ccm-ready.org/fhir/StructureDefinition/performer-verification"


@pytest.fixture
def chart(sekmet: SekmetServer) -> dict[str, str]:
    fhir = FhirClient(sekmet.base)
    nurse = fhir.create({"resourceType": "Practitioner", "name": [{"family": "Teamnurse"}]})
    patient = fhir.create({"resourceType": "Patient", "name": [{"family": "Performertest"}]})
    fhir.create({"resourceType": "CareTeam", "status": "active",
                 "subject": {"reference": f"Patient/{patient['id']}"},
                 "participant": [{"member": {"reference": f"Practitioner/{nurse['id']}"}}]})
    return {"patient": patient["id"], "nurse": f"Practitioner/{nurse['id']}"}


def body(performer: str) -> dict[str, Any]:
    start = entry_moment(3)
    return {"date": start.date().isoformat(), "start": start.strftime("%H:%M"), "minutes": "12",
            "note": GOOD_NOTE, "performer": performer}


def provenance_of(base: str, entry_id: str) -> dict[str, Any]:
    fhir = FhirClient(base)
    (enc,) = fhir.search("Encounter", {"identifier": f"{TIME_ENTRY_ID}|{entry_id}"})
    (prov,) = fhir.search("Provenance", {"target": f"Encounter/{enc['id']}"})
    return prov


def verification(prov: dict[str, Any]) -> str:
    return next(e["valueCode"] for e in prov["extension"] if e["url"] == EXT_PERFORMER_VERIFICATION)


def test_smart_launch_without_fhiruser_cannot_name_any_performer(
    tmp_path: Path, sekmet: SekmetServer, oauth_server: OAuthServer, chart: dict[str, str]
) -> None:
    oauth_ready(oauth_server, patient=chart["patient"])  # an id_token, but no fhirUser in it
    app = smart_app(tmp_path, {sekmet.base: oauth_server.smart_configuration()})
    client = app.test_client()
    assert launch(client, sekmet.base).status_code == 302
    client.get("/time/new")
    with client.session_transaction() as sess:
        csrf = sess["csrf"]
    resp = post_json(client, csrf, "/time", body("Practitioner/someone-else"))
    assert resp.status_code == 422, resp.get_json()
    assert resp.get_json()["errors"][0]["code"] == "performer-unverified"
    assert FhirClient(sekmet.base).search("Encounter", {"patient": chart["patient"]}) == []
    # A member of the patient's care team (as the server has it) is accepted, and the Provenance says so.
    ok = post_json(client, csrf, "/time", body(chart["nurse"]))
    assert ok.status_code == 201, ok.get_json()
    prov = provenance_of(sekmet.base, ok.get_json()["id"])
    assert prov["agent"][0]["who"]["reference"] == chart["nurse"]
    assert verification(prov) == "care-team"


def test_verified_fhiruser_is_the_performer_whatever_the_form_says(
    tmp_path: Path, sekmet: SekmetServer, oauth_server: OAuthServer, chart: dict[str, str]
) -> None:
    oauth_ready(oauth_server, patient=chart["patient"], fhirUser=chart["nurse"])
    app = smart_app(tmp_path, {sekmet.base: oauth_server.smart_configuration()})
    client = app.test_client()
    assert launch(client, sekmet.base).status_code == 302
    client.get("/time/new")
    with client.session_transaction() as sess:
        csrf = sess["csrf"]
    resp = post_json(client, csrf, "/time", body("Practitioner/impostor"))
    assert resp.status_code == 201, resp.get_json()
    prov = provenance_of(sekmet.base, resp.get_json()["id"])
    assert prov["agent"][0]["who"]["reference"] == chart["nurse"] and verification(prov) == "id-token"


def test_open_mode_writes_but_marks_the_performer_unverified(
    tmp_path: Path, sekmet: SekmetServer, chart: dict[str, str]
) -> None:
    app = smart_app(tmp_path, {}, OPEN_SERVERS=[sekmet.base])
    client, csrf = launched(app, LaunchContext(mode="open", fhir_base=sekmet.base,
                                                    patient_id=chart["patient"]))
    resp = post_json(client, csrf, "/time", body("Practitioner/typed-by-a-tester"))
    assert resp.status_code == 201, resp.get_json()
    prov = provenance_of(sekmet.base, resp.get_json()["id"])
    assert verification(prov) == "unverified"
    assert "NOT verified" in prov["agent"][0]["who"]["display"]


def test_consent_obtained_by_an_unverified_user_is_refused(
    tmp_path: Path, sekmet: SekmetServer, chart: dict[str, str]
) -> None:
    app = smart_app(tmp_path, {})
    ctx = LaunchContext(mode="ehr", fhir_base=sekmet.base, patient_id=chart["patient"],
                        granted_scopes=frozenset({"patient/*.*"}))
    client, csrf = launched(app, ctx)
    resp = post_json(client, csrf, "/consent", {
        "decision": "given", "date": entry_moment(1).date().isoformat(), "method": "verbal",
        "disclosures": ["ccm-available", "cost-sharing", "one-practitioner", "right-to-stop"],
        "obtained_by": "Practitioner/not-on-the-team", "billing_practitioner": chart["nurse"]})
    assert resp.status_code == 422, resp.get_json()
    assert resp.get_json()["errors"][0]["code"] == "performer-unverified"
    assert FhirClient(sekmet.base).search("Consent", {"patient": chart["patient"]}) == []
