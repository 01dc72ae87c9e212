"""The initiating visit written to a real sekmet-fhir: once (sent twice), valid R4, with its Provenance, and
read by the rules as the billing practitioner's qualifying visit."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from fhirclient.models.encounter import Encounter as FcEncounter
from fhirclient.models.provenance import Provenance as FcProvenance

from fhir_mapping.reader import read_facts
from fhir_mapping.write_time import new_entry_id
from fhir_mapping.write_visit import VISIT_ID
from smart_app.demo.local_fhir import SekmetServer
from smart_app.fhir.client import FhirClient
from tests.integration.test_writeback import DOCTOR, UTC, by_identifier, make_app, new_patient, post_json

pytestmark = pytest.mark.integration


def test_visit_written_once_read_back_valid_and_read_as_a_visit(sekmet: SekmetServer, tmp_path: Path) -> None:
    fhir = FhirClient(sekmet.base)
    patient = new_patient(fhir, "Visit")
    _, client, csrf = make_app(tmp_path, sekmet.base, patient)
    day = (datetime.now(UTC) - timedelta(days=3)).date()
    body = {"visit_id": new_entry_id(), "date": day.isoformat(), "practitioner": DOCTOR, "code": "G0438",
            "ccm_discussed": True}
    resp = post_json(client, csrf, "/visit", body)
    assert resp.status_code == 201, resp.get_json()
    assert post_json(client, csrf, "/visit", body).status_code == 201
    (enc,) = by_identifier(fhir, "Encounter", VISIT_ID, body["visit_id"])
    FcEncounter(enc, strict=True)
    assert enc["subject"]["reference"] == f"Patient/{patient}"
    (prov,) = fhir.search("Provenance", {"target": f"Encounter/{enc['id']}"})
    FcProvenance(prov, strict=True)
    (visit,) = read_facts([enc], patient).visits
    assert [c.code for c in visit.codings] == ["G0438"] and DOCTOR in visit.participants
    refused = post_json(client, csrf, "/visit", {**body, "visit_id": new_entry_id(), "code": "99211"})
    assert refused.status_code == 422
    assert any("G0438" in e["message"] for e in refused.get_json()["errors"])  # the accepted codes listed
