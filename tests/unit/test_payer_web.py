"""Payer page over HTTP (Flask test client): hand-off from the program page's worklist, CSRF, errors."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from smart_app.app import create_app
from smart_app.program import selection, worklist_runs
from smart_app.program.jobs import WorklistResult
from smart_app.program.remittance_store import RemittanceStore
from tests.support.demo_rows import demo_rows

BASE = "http://fhir.test/fhir"


class FakeServer:
    """Patient and Practitioner reads as the EHR answers them."""

    def read(self, rtype: str, rid: str) -> dict[str, Any]:
        system = "http://hl7.org/fhir/sid/us-mbi" if rtype == "Patient" else "http://hl7.org/fhir/sid/us-npi"
        value = "1EG4TE5MK73" if rtype == "Patient" else "1234567893"
        return {"resourceType": rtype, "id": rid, "identifier": [{"system": system, "value": value}]}


@pytest.fixture(scope="module")
def rows() -> list[Any]:
    return list(demo_rows().values())


@pytest.fixture()
def client(tmp_path: Path, rows: list[Any]):  # type: ignore[no-untyped-def]
    app = create_app(
        {
            "SECRET_KEY": "t",
            "DATA_DIR": str(tmp_path),
            "TIMEZONE": "America/Chicago",
            "PROGRAM_FHIR_BASE": BASE,
            "OPEN_SERVERS": [BASE],  # test data: the practice page needs no sign-in
            "PROGRAM_CLIENT_FACTORY": lambda base: FakeServer(),
            "CLAIMS_BILLING_NPI": "1992753880",
        }
    )
    with app.test_request_context("/program/payer?month=2026-10"):
        worklist_runs.store_result(*selection.chosen(), WorklistResult("2026-10", rows))
    return app.test_client()


def _token(client) -> str:  # type: ignore[no-untyped-def]
    client.get("/program/payer?month=2026-10")
    with client.session_transaction() as sess:
        return str(sess["csrf"])


def test_page_shows_the_months_ready_claims_and_the_what_if(client, rows: list[Any]) -> None:  # type: ignore[no-untyped-def]
    page = client.get("/program/payer?month=2026-10")
    assert page.status_code == 200
    ready = sum(1 for r in rows if r.status == "ready")
    assert f'<span id="ready-count">{ready}</span>'.encode() in page.data
    assert b"the Health Prime article (no remittances loaded)" in page.data
    assert b'id="monthly-gain"' in page.data


def test_handoff_csv_and_fhir_from_the_page_record_the_claims(client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    token = _token(client)
    resp = client.post("/program/payer/claims?month=2026-10", data={"csrf_token": token, "format": "csv"})
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    table = list(csv.DictReader(io.StringIO(resp.get_data(as_text=True))))
    assert table and {r["medicare_id"] for r in table} == {"1EG4TE5MK73"}
    assert {r["billing_npi"] for r in table} == {"1992753880"}
    resp = client.post("/program/payer/claims?month=2026-10", data={"csrf_token": token, "format": "fhir"})
    bundle = json.loads(resp.data)
    assert {e["resource"]["status"] for e in bundle["entry"]} == {"draft"}
    store = RemittanceStore.in_dir(tmp_path)
    assert {c.claim_id for c in store.claims()} == {r["claim_id"] for r in table}
    store.close()


def test_posts_need_the_csrf_token_and_bad_input_is_a_4xx(client) -> None:  # type: ignore[no-untyped-def]
    assert client.post("/program/payer/claims?month=2026-10", data={"format": "csv"}).status_code == 400
    token = _token(client)
    assert (
        client.post(
            "/program/payer/claims?month=2026-10", data={"csrf_token": token, "format": "x"}
        ).status_code
        == 400
    )
    assert client.get("/program/payer?month=2026-13").status_code == 400
    resp = client.post(
        "/program/payer/remit?month=2026-10",
        data={"csrf_token": token, "files": (io.BytesIO(b"not a remittance"), "x.835")},
        content_type="multipart/form-data",
    )
    assert resp.status_code == 303 and "Nothing+was+loaded" in resp.headers["Location"]
