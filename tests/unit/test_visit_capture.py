"""The initiating visit: strict writer, the form reached from the checklist, and the panel counting it (on the
EHR, or from the ledger when the EHR refuses Encounter writes)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from fhir_mapping.read_note import merge_captured
from fhir_mapping.reader import read_facts
from fhir_mapping.write_provenance import WriteError
from fhir_mapping.write_visit import VISIT_ID, VisitDraft, encounter, visit_to_json, visit_transaction
from smart_app.fhir.client import FhirError
from tests.unit.test_outbox import FakeServer
from tests.unit.test_panel import BASE, DR, MONTH, make_app, open_session, scenario

PID = "p-novisit"
VISIT_UUID = "0b7a4a1e-5d5c-4f7e-9a43-2f1c1b8d2a61"
OUTCOME = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "forbidden"}]}
PEOPLE = [
    {"resourceType": "Practitioner", "id": "dr1", "name": [{"given": ["Grace"], "family": "Hopper"}]},
    {"resourceType": "Practitioner", "id": "rn1", "name": [{"given": ["Florence"], "family": "Nightingale"}]},
]


def no_visit(pid: str = PID) -> list[dict[str, Any]]:
    """A patient whose November 2026 is blocked only by the missing initiating visit."""
    return [r for r in scenario("ready", pid) if r.get("id") != f"{pid}-visit"]


def draft(**kw: Any) -> VisitDraft:
    base = dict(visit_id=VISIT_UUID, patient_id=PID, practitioner=DR, day=date(2026, 11, 3), code="G0438")
    return VisitDraft(**{**base, **kw})  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------ writer


def test_the_visit_is_a_finished_face_to_face_encounter_the_reader_takes_as_a_visit() -> None:
    enc = encounter(draft())
    assert enc["status"] == "finished" and enc["class"]["code"] == "AMB"
    assert enc["identifier"] == [{"system": VISIT_ID, "value": VISIT_UUID}]
    assert enc["participant"][0]["individual"] == {"reference": DR}
    facts = read_facts([*no_visit(), {**enc, "id": "v1"}], PID, "UTC")
    (visit,) = [v for v in facts.visits if v.id.endswith("v1")]
    assert [c.code for c in visit.codings] == ["G0438"] and DR in visit.participants


def test_the_transaction_is_conditional_on_our_identifier_and_the_patient_with_provenance() -> None:
    bundle = visit_transaction(draft(), user=DR, recorded=datetime(2026, 11, 3, 12, tzinfo=UTC),
                               pack_id="cms-pfs-2026", pack_version="1", verification="unverified")
    enc, prov = (e for e in bundle["entry"])
    assert enc["request"]["ifNoneExist"].endswith(f"patient=Patient/{PID}")
    assert VISIT_UUID in enc["request"]["ifNoneExist"]
    assert prov["resource"]["resourceType"] == "Provenance"
    assert prov["resource"]["target"] == [{"reference": enc["fullUrl"]}]


@pytest.mark.parametrize("bad", [{"code": "99211"}, {"code": "99490"}, {"practitioner": "Patient/x"},
                                 {"ccm_discussed": False}])
def test_the_writer_refuses_what_is_not_an_initiating_visit(bad: dict[str, Any]) -> None:
    with pytest.raises(WriteError):
        encounter(draft(**bad))


def test_a_visit_kept_in_the_ledger_reads_back_once() -> None:
    facts = {"visit": visit_to_json(draft())}
    merged = merge_captured(no_visit(), [("visit", facts), ("visit", facts)])
    visits = [r for r in merged if r.get("id") == f"cr-{VISIT_UUID}"]
    assert len(visits) == 1
    on_ehr = {**encounter(draft()), "id": "server-1"}
    assert not [r for r in merge_captured([on_ehr], [("visit", facts)]) if r.get("id", "").startswith("cr-")]


# ------------------------------------------------------------------------------------ the form and the panel


class _Writes:
    """Reads from the panel's fake; writes to `writes` (FakeServer, or one refusing Encounter writes)."""

    def __init__(self, reads: Any, writes: Any) -> None:
        self.reads, self.writes = reads, writes

    def __getattr__(self, name: str) -> Any:
        return getattr(self.writes if name in ("transaction", "create") else self.reads, name)


class _RefusesEncounters(FakeServer):
    def transaction(self, bundle: dict[str, Any]) -> dict[str, Any]:
        raise FhirError(405, "transactions are not supported", OUTCOME)

    def create(self, resource: dict[str, Any], if_none_exist: str | None = None) -> dict[str, Any]:
        if resource.get("resourceType") == "Encounter":
            raise FhirError(403, "Encounter is not accepted from apps", OUTCOME)
        return super().create(resource, if_none_exist)


def _client(tmp_path: Path, refuse: bool = False) -> tuple[Any, Any]:
    app = make_app(tmp_path, [*no_visit(), *PEOPLE], OUTBOX_WORKER=False, WTF_CSRF_ENABLED=False)
    reads = app.config["FHIR_CLIENT_FACTORY"](None)
    writes = _RefusesEncounters() if refuse else FakeServer()
    writes.resources = reads.resources
    both = _Writes(reads, writes)
    app.config["FHIR_CLIENT_FACTORY"] = lambda ctx: both
    client = app.test_client()
    open_session(client, PID)
    return app, client


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    return found.group(1) if found else ""


def _visit_line(client: Any) -> str:
    html = client.get("/panel", query_string={"month": MONTH}).get_data(as_text=True)
    found = re.search(r'<li class="check check-(\w+) prereq-initiating-visit">', html)
    assert found, html[:400]
    return found.group(1)


@pytest.mark.parametrize("refuse", [False, True], ids=["ehr", "ledger-fallback"])
def test_the_checklist_line_leads_to_the_form_and_the_panel_counts_the_visit(
    tmp_path: Path, refuse: bool
) -> None:
    app, client = _client(tmp_path, refuse)
    panel = client.get("/panel", query_string={"month": MONTH}).get_data(as_text=True)
    assert _visit_line(client) == "missing"
    assert f'href="/visit/new?month={MONTH}"' in panel
    form = client.get("/visit/new", query_string={"month": MONTH}).get_data(as_text=True)
    assert "Grace Hopper" in form and "Practitioner/dr1</option>" not in form
    assert re.search(r'<option value="Practitioner/dr1"\s+selected', form)  # the patient's GP preselected
    assert "Annual wellness visit (AWV), initial (G0438)" in form
    bad = client.post("/visit", data={"csrf_token": _csrf(form), "visit_id": VISIT_UUID, "month": MONTH,
                                      "date": "2026-11-03", "practitioner": DR, "code": ""})
    text = bad.get_data(as_text=True)
    assert bad.status_code == 422
    assert 'id="visit-code-error"' in text and 'id="visit-ccm-discussed-error"' in text
    assert 'aria-describedby="visit-code-error"' in text
    ok = client.post("/visit", data={"csrf_token": _csrf(form), "visit_id": VISIT_UUID, "month": MONTH,
                                     "date": "2025-12-01", "practitioner": DR, "code": "99214",
                                     "ccm_discussed": "yes"})
    answer = ok.get_data(as_text=True)
    assert ok.status_code == 201, answer[:600]
    assert f'href="/panel?month={MONTH}"' in answer
    if refuse:
        assert "ledger" in answer
        summary = client.get("/ledger/summary", query_string={"month": MONTH}).get_data(as_text=True)
        line = re.search(r'<li class="ledger-visit">(.*?)</li>', summary, re.S)
        assert line and "2025-12-01, 99214, seen by Grace Hopper; written to: ledger only" in line.group(1)
    assert _visit_line(client) == "met"
    again = client.post("/visit", data={"csrf_token": _csrf(form), "visit_id": VISIT_UUID, "month": MONTH,
                                        "date": "2025-12-01", "practitioner": DR, "code": "99214",
                                        "ccm_discussed": "yes"})
    assert again.status_code == 201  # the same visit sent twice is stored once
    stored = [r for r in app.extensions["fake_fhir"].resources if r.get("resourceType") == "Encounter"
              and r.get("identifier", [{}])[0].get("system") == VISIT_ID]
    assert len(stored) == (0 if refuse else 1)


def test_a_future_visit_and_a_missing_date_are_field_errors(tmp_path: Path) -> None:
    _, client = _client(tmp_path)
    form = client.get("/visit/new").get_data(as_text=True)
    resp = client.post("/visit", data={"csrf_token": _csrf(form), "visit_id": VISIT_UUID,
                                       "date": "2999-01-01", "practitioner": DR, "code": "G0438",
                                       "ccm_discussed": "yes"})
    assert resp.status_code == 422 and "cannot be in the future" in resp.get_data(as_text=True)
    assert BASE  # the panel fake's server
