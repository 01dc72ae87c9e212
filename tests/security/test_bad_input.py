"""Bad input gets a clear 4xx or exit 2, never a traceback or a 500 (issue 12, item 14)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from smart_app.cli.commands import main
from tests.support.app import launched, make_app, open_launch
from tests.support.fake_fhir import NURSE, PATIENT, one_patient_practice
from tests.support.sekmet import SekmetServer

ODD_TYPES = [[1], {"a": 1}, 5, "Foo"]


@pytest.mark.parametrize("rtype", ODD_TYPES)
@pytest.mark.parametrize("shape", ["bundle", "ndjson"])
def test_evaluate_and_packet_with_odd_resource_types(
    tmp_path: Path, capsys: Any, rtype: Any, shape: str
) -> None:
    items = [{"resourceType": "Patient", "id": "p1"}, {"resourceType": rtype, "id": "x"}]
    path = tmp_path / ("in.json" if shape == "bundle" else "in.ndjson")
    if shape == "bundle":
        path.write_text(
            json.dumps(
                {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in items]}
            )
        )
    else:
        path.write_text("\n".join(json.dumps(r) for r in items))
    assert main(["evaluate", str(path), "--month", "2026-11"]) in (0, 2)
    assert main(["packet", str(path), "--month", "2026-11", "--out", str(tmp_path / "out"), "--no-pdf"]) in (
        0,
        2,
    )
    alone = tmp_path / "alone.json"
    alone.write_text(
        json.dumps(
            {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"resourceType": rtype}}]}
        )
    )
    assert main(["evaluate", str(alone), "--month", "2026-11"]) in (0, 2)
    assert "Traceback" not in capsys.readouterr().err


def test_evaluate_month_at_the_end_of_time_is_exit_2(tmp_path: Path, capsys: Any) -> None:
    path = tmp_path / "in.json"
    path.write_text(json.dumps({"resourceType": "Patient", "id": "p1"}))
    assert main(["evaluate", str(path), "--month", "9999-12"]) == 2
    assert "9998-12" in capsys.readouterr().err


@pytest.mark.integration
def test_import_row_dated_9999_is_a_row_error(tmp_path: Path, sekmet: SekmetServer, capsys: Any) -> None:
    csv = tmp_path / "time.csv"
    csv.write_text(
        "patient,performer,start,minutes,program,activity,note\n"
        "p1,Practitioner/rn-1,9999-12-31T23:59:59,25,ccm,patient-call,BP 150s (HTN); recheck Fri\n"
    )
    assert main(["import-time", str(csv), "--fhir-base", sekmet.base]) == 1
    err = capsys.readouterr()
    assert "line 2" in err.err and "Traceback" not in err.err
    assert "imported=0 duplicates=0 errors=1" in err.out


@pytest.fixture
def client(tmp_path: Path) -> tuple[Any, str]:
    fake = one_patient_practice()
    return launched(make_app(tmp_path, fhir=fake), open_launch(fake.base, PATIENT, NURSE))


def test_time_with_conditions_that_are_a_number(client: tuple[Any, str]) -> None:
    c, csrf = client
    resp = c.post(
        "/time",
        json={"minutes": "5", "note": "Called about glucose (diabetes); recheck Friday.", "conditions": 5},
        headers={"X-CSRF-Token": csrf},
    )
    assert 200 <= resp.status_code < 500, resp.get_data(as_text=True)[:300]


@pytest.mark.parametrize("disclosures", [[{}], [1, None], {"a": 1}, "ccm-available"])
def test_consent_with_disclosures_that_are_not_codes(client: tuple[Any, str], disclosures: Any) -> None:
    c, csrf = client
    resp = c.post(
        "/consent",
        json={
            "decision": "given",
            "date": "2026-11-02",
            "method": "verbal",
            "disclosures": disclosures,
            "billing_practitioner": NURSE,
        },
        headers={"X-CSRF-Token": csrf},
    )
    assert resp.status_code == 422, resp.get_data(as_text=True)[:300]
