"""Claim hand-off: CSV columns and draft FHIR Claims (validated R4) for the demo's ready patient-months."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime
from typing import Any

import pytest
from fhir.resources.R4B.claim import Claim

from smart_app.program import claims
from tests.support.demo_rows import demo_rows


class FakeDirectory:
    """Medicare ids and NPIs as a FHIR server would give them."""

    def __init__(self, staff: str = "") -> None:
        self.staff = staff

    def medicare_id(self, patient: str) -> str:
        return "1EG4TE5MK73" if patient == self.staff else ""

    def npi(self, practitioner: str) -> str:
        return "1234567893"


@pytest.fixture(scope="module")
def rows() -> dict[str, Any]:
    return demo_rows()


def test_ready_months_become_claims_with_everything_a_biller_needs(rows: dict[str, Any]) -> None:
    ready = [r for r in rows.values() if r.status == "ready"]
    assert ready, "the demo has ready patient-months"
    staff_row = rows["ready-staff"]
    directory = FakeDirectory(staff_row.patient)
    drafts = claims.drafts(
        claims.ready_items(rows.values()), directory, claims.Practice(billing_npi="1992753880")
    )
    assert {d.patient for d in drafts} == {r.patient for r in ready}
    text = claims.to_csv(drafts)
    table = list(csv.DictReader(io.StringIO(text)))
    assert tuple(table[0].keys()) == claims.CSV_COLUMNS
    assert len(table) == sum(len(r.codes) for r in ready)  # one row per CPT line
    for rec in table:
        assert rec["date_of_service"] == "2026-10-31"  # the last day of the service month
        assert rec["place_of_service"] == "11"
        assert rec["billing_npi"] == "1992753880" and rec["rendering_npi"] == "1234567893"
        assert rec["verdict_id"].startswith("v-") and rec["claim_id"].startswith("CCM")
        assert rec["cpt"] in {"99490", "99439", "99491", "99437", "99487", "99489"}
    staff = next(rec for rec in table if rec["patient"] == staff_row.patient)
    assert staff["medicare_id"] == "1EG4TE5MK73"
    assert staff["icd10_codes"].split(";")[:2] == ["E11.9", "I10"]


def test_claim_ids_and_verdict_ids_are_stable() -> None:
    assert claims.claim_id("Patient/a", "2026-10") == claims.claim_id("Patient/a", "2026-10")
    assert claims.claim_id("Patient/a", "2026-10") != claims.claim_id("Patient/a", "2026-11")
    assert len(claims.claim_id("Patient/" + "x" * 64, "2026-10")) <= 38  # fits 837 CLM01 / 835 CLP01
    v = {"patient": "Patient/a", "month": "2026-10", "status": "ready"}
    assert claims.verdict_id(v) == claims.verdict_id(dict(reversed(list(v.items()))))


def test_diagnoses_take_one_icd10_per_condition_first() -> None:
    v = {
        "chronic_conditions": [
            {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E119", "condition": "diabetes"},
            {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E11.65", "condition": "diabetes"},
            {"system": "http://snomed.info/sct", "code": "38341003", "condition": "hypertension"},
            {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "I10", "condition": "hypertension"},
        ]
    }
    assert claims.diagnoses(v) == ("E11.9", "I10", "E11.65")


def test_missing_ids_and_diagnoses_are_flagged(rows: dict[str, Any]) -> None:
    drafts = claims.drafts(claims.ready_items(rows.values()), claims.NoDirectory(), claims.Practice())
    assert all("no Medicare id (MBI) on the patient" in d.problems for d in drafts)
    assert all("no rendering NPI" in d.problems for d in drafts)


def test_fhir_claims_are_valid_r4_drafts(rows: dict[str, Any]) -> None:
    drafts = claims.drafts(claims.ready_items(rows.values()), FakeDirectory(), claims.Practice())
    bundle = claims.to_bundle(drafts, datetime(2026, 11, 1, tzinfo=UTC))
    assert len(bundle["entry"]) == len(drafts)
    assert sum(1 for d in drafts if len(d.diagnoses) >= 2) >= 2
    # SNOMED-only problem lists give no ICD-10-CM code: the hand-off says so instead of inventing one
    assert all("fewer than 2 chronic ICD-10-CM codes" in d.problems for d in drafts if len(d.diagnoses) < 2)
    for entry, d in zip(bundle["entry"], drafts, strict=True):
        claim = Claim.model_validate(entry["resource"])
        assert claim.status == "draft" and claim.use == "claim"
        assert {i.value for i in claim.identifier} == {d.claim_id, d.verdict_id}
        assert [str(x.servicedDate) for x in claim.item] == [str(date(2026, 10, 31))] * len(d.lines)
        assert [x.productOrService.coding[0].code for x in claim.item] == [ln.code for ln in d.lines]
        assert [x.diagnosisCodeableConcept.coding[0].code for x in claim.diagnosis or []] == list(d.diagnoses)
        assert claim.careTeam[0].provider.identifier.value == "1234567893"


def test_cli_claims_from_a_worklist_file(rows: dict[str, Any], tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from smart_app.cli.commands import main
    from smart_app.program.remittance_store import RemittanceStore
    from smart_app.program.worklist import row_json

    path = tmp_path / "rows.json"
    path.write_text(json.dumps([row_json(r) for r in rows.values()]))
    data = tmp_path / "data"
    args = ["claims", "--worklist", str(path), "--month", "2026-10", "--data-dir", str(data)]
    assert main([*args, "--billing-npi", "1992753880"]) == 0
    out = capsys.readouterr()
    table = list(csv.DictReader(io.StringIO(out.out)))
    ready = [r for r in rows.values() if r.status == "ready"]
    assert len({rec["claim_id"] for rec in table}) == len(ready)
    assert "with problems to fix before sending" in out.err
    store = RemittanceStore.in_dir(data)
    assert len(store.claims()) == len(ready)
    store.close()
    assert main([*args, "--format", "fhir", "--no-record"]) == 0
    assert json.loads(capsys.readouterr().out)["resourceType"] == "Bundle"
    assert main([*args[:-2], "--month", "2026-13"]) == 2
    assert main([*args, "--billing-npi", "12"]) == 2
    assert "Traceback" not in capsys.readouterr().err
