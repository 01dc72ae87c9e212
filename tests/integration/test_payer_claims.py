"""Claims hand-off and remittance matching end to end on a real sekmet-fhir: `ccm-ready claims --fhir-base`
reads Medicare ids and NPIs from Patient / Practitioner, and an 835 for the claim is matched back."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rules.month import Month
from smart_app.cli.commands import main
from smart_app.fhir.client import FhirClient
from smart_app.program.remittance_store import RemittanceStore
from tests.support.population import seed_population
from tests.support.sekmet import SekmetServer
from tests.support.x12_835 import Claim, era, paid_line

pytestmark = pytest.mark.integration
MONTH = str(Month.of(datetime.now(UTC)))


def _put_identifier(client: FhirClient, reference: str, system: str, value: str) -> None:
    rtype, rid = reference.split("/")
    resource = client.read(rtype, rid)
    resource["identifier"] = [*resource.get("identifier", []), {"system": system, "value": value}]
    client.transaction(
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [{"resource": resource, "request": {"method": "PUT", "url": reference}}],
        }
    )


def test_claims_from_the_server_then_remittance_matched(
    sekmet: SekmetServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    client = FhirClient(sekmet.base, timeout=60.0)
    pop = seed_population(client, 22, f"pc-{uuid.uuid4().hex[:8]}")
    data = tmp_path / "data"
    args = [
        "claims",
        "--fhir-base",
        sekmet.base,
        "--group",
        f"Group/{pop.group_id}",
        "--month",
        MONTH,
        "--no-bulk",
        "--data-dir",
        str(data),
    ]
    assert main(args) == 0
    first = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    ready = {p for p, status in pop.expected.items() if status == "ready"}
    assert {r["patient"] for r in first} == ready
    target = next(r for r in first if r["rendering_practitioner"])
    _put_identifier(client, target["patient"], "http://hl7.org/fhir/sid/us-mbi", "1EG4TE5MK73")
    _put_identifier(client, target["rendering_practitioner"], "http://hl7.org/fhir/sid/us-npi", "1234567893")
    assert main(args) == 0
    again = [
        r for r in csv.DictReader(io.StringIO(capsys.readouterr().out)) if r["patient"] == target["patient"]
    ]
    assert {r["medicare_id"] for r in again} == {"1EG4TE5MK73"}
    assert {r["rendering_npi"] for r in again} == {"1234567893"}

    lines = [
        paid_line(r["cpt"], r["charge"], "0.00", date=r["date_of_service"].replace("-", "")) for r in again
    ]
    remit = tmp_path / "era.835"
    remit.write_text(era([Claim(target["claim_id"], "1EG4TE5MK73", lines)], trace="EFT-INT-1"))
    assert main(["remit", "--data-dir", str(data), str(remit)]) == 0
    assert (
        capsys.readouterr()
        .out.strip()
        .endswith(f"lines={len(lines)} paid={len(lines)} denied=0 adjusted=0 duplicates=0")
    )
    store = RemittanceStore.in_dir(data)
    try:
        got = {(ln.patient, ln.month, ln.code, ln.matched) for ln in store.lines()}
    finally:
        store.close()
    assert got == {(target["patient"], MONTH, r["cpt"], "matched") for r in again}
