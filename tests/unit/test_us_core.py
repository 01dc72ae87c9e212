"""Every shape the app writes: valid R4 (Medplum's validator, fhir.resources) and US Core where it applies.

Shapes: each write profile (structured transaction, clinical note), each kind of write (time entry,
correction, consent given / declined / stopped, care plan, charge items) and the audit packet (with a ledger
extract). The Medplum validator (@medplum/core validateResource, tests/fhir_validate) runs ONCE for the
whole module.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from fhir_mapping.codes import LOINC, SNOMED
from fhir_mapping.read_note import merge_captured, note_facts
from fhir_mapping.reader import read_facts
from fhir_mapping.write_charge import charge_transaction
from fhir_mapping.write_consent import ConsentDraft, consent_transaction, stop_transaction
from fhir_mapping.write_note import US_CORE_DOC_CATEGORY, consent_note, time_note
from fhir_mapping.write_provenance import checked
from fhir_mapping.write_time import (
    INDIRECT_ENCOUNTER,
    TimeEntryDraft,
    correction_transaction,
    encounter,
    entry_transaction,
    task,
)
from smart_app.capture.ledger import Ledger
from smart_app.packet.document import build_packet
from smart_app.packet.ledger_extract import extract
from tests.support.medplum import medplum_errors, resources_of
from tests.unit.test_careplan_writer import draft as plan_draft
from tests.unit.test_careplan_writer import tx as plan_tx

NOW = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
PID = "p1"
NURSE = "Practitioner/rn1"
DOCTOR = "Practitioner/dr"
ENTRY = "0b9f4a44-4d7b-4c55-9a8e-1c1f7b2d3e01"
CONSENT = "6a1d1c1e-2b7f-4a8e-8a55-0f0e9d7c6b02"
PACK = {"pack_id": "cms-pfs-2026", "pack_version": "2026.1"}


def time_draft(entry_id: str = ENTRY, minutes: int = 25) -> TimeEntryDraft:
    start = NOW - timedelta(hours=3)
    note = "Reviewed home glucose log (diabetes); adjusted metformin timing; recheck Friday."
    return TimeEntryDraft(entry_id, PID, NURSE, start, minutes, "ccm", "patient-call", note)


def consent_draft(decision: str = "given") -> ConsentDraft:
    return ConsentDraft(
        consent_id=CONSENT,
        patient_id=PID,
        decision=decision,
        obtained_at=NOW - timedelta(days=1),
        obtained_by=NURSE,
        billing_practitioner=DOCTOR,
        method="verbal",
        stop_date=date(2026, 11, 30) if decision == "stopped" else None,
    )


def _stored(res: dict[str, Any], rid: str) -> dict[str, Any]:
    return {**res, "id": rid, "meta": {"versionId": "1"}}


def _packet(tmp: Path) -> dict[str, Any]:
    ledger = Ledger(tmp / "ledger.sqlite3")
    facts = {"entry": {**json.loads(json.dumps(_draft_json()))}, **PACK}
    ledger.append(ENTRY, "time", fhir_base="http://ehr/fhir", patient_id=PID, user=NURSE, facts=facts)
    resources = [{"resourceType": "Patient", "id": PID, "name": [{"family": "Doe"}]}]
    merged = merge_captured(resources, [("time", facts)])
    packet = build_packet(
        merged,
        "2026-11",
        patient_id=PID,
        fhir_base="http://ehr/fhir",
        ledger=extract(ledger, "http://ehr/fhir", PID),
    )
    ledger.close()
    return packet.bundle


def _draft_json() -> dict[str, Any]:
    from fhir_mapping.write_time import draft_to_json

    return draft_to_json(time_draft())


def written_shapes(tmp: Path) -> dict[str, dict[str, Any]]:
    """Every kind of resource the app writes, by a readable name."""
    d = time_draft()
    enc = _stored(encounter(d), "e1")
    tsk = _stored(task(d, "Encounter/e1", NOW), "t1")
    consent_tx = consent_transaction(consent_draft(), user=NURSE, recorded=NOW, **PACK)
    stored_consent = _stored(consent_tx["entry"][0]["resource"], "c1")
    shapes = {
        "structured time entry": entry_transaction(d, user=NURSE, recorded=NOW, **PACK),
        "correction with replacement": correction_transaction(
            "http://ehr/fhir",
            enc,
            [tsk],
            "minutes mistyped",
            user=NURSE,
            recorded=NOW,
            replacement=time_draft("1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f", 15),
            **PACK,
        ),
        "consent given": consent_tx,
        "consent declined": consent_transaction(consent_draft("declined"), user=NURSE, recorded=NOW, **PACK),
        "consent stopped": stop_transaction(
            "http://ehr/fhir", stored_consent, date(2026, 11, 30), user=NURSE, recorded=NOW, **PACK
        ),
        "care plan": plan_tx(plan_draft()),
        "charge items": charge_transaction(
            patient_id=PID,
            month="2026-11",
            lines=[("99490", 1, "CCM first 20 min")],
            practitioner=DOCTOR,
            start=NOW - timedelta(days=19),
            end=NOW,
            entered=NOW,
            user=DOCTOR,
            **PACK,
        ),
        "note: time entry": time_note(d, NOW),
        "note: consent": consent_note(consent_draft(), NOW),
        "note: consent stopped": consent_note(consent_draft("stopped"), NOW),
        "audit packet": _packet(tmp),
    }
    return shapes


def _flat(shapes: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, shape in shapes.items():
        for part, res in resources_of(shape).items():
            out[f"{name} / {part}"] = res
    return out


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    return written_shapes(tmp_path_factory.mktemp("shapes"))


CONTROL = "control: an invalid note"


def _invalid_note() -> dict[str, Any]:
    bad = time_note(time_draft(), NOW)
    bad["status"] = "final"  # not a DocumentReference status
    bad["bogus"] = 1
    return bad


@pytest.fixture(scope="module")
def medplum(shapes: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """One node process for every shape, plus a control the validator must reject."""
    return medplum_errors({**_flat(shapes), CONTROL: _invalid_note()})


def test_medplum_finds_no_error_in_any_written_shape(
    shapes: dict[str, dict[str, Any]], medplum: dict[str, list[str]]
) -> None:
    assert len(medplum) >= 30  # every Bundle and each of its resources
    assert {n: e for n, e in medplum.items() if e and n != CONTROL} == {}


def test_the_medplum_validator_does_catch_errors(medplum: dict[str, list[str]]) -> None:
    assert any("bogus" in e for e in medplum[CONTROL])


def test_fhir_resources_accepts_every_written_resource(shapes: dict[str, dict[str, Any]]) -> None:
    for name, res in _flat(shapes).items():
        assert checked(res) is res, name


# ------------------------------------------------------------------------------ US Core assertions


def _of(shape: dict[str, Any], rtype: str) -> list[dict[str, Any]]:
    return [r for r in resources_of(shape).values() if r.get("resourceType") == rtype]


def test_encounter_type_has_a_standard_code_and_text_beside_ours(shapes: dict[str, dict[str, Any]]) -> None:
    for name in ("structured time entry", "correction with replacement"):
        for enc in _of(shapes[name], "Encounter"):
            for concept in enc["type"]:
                systems = {c["system"]: c["code"] for c in concept["coding"]}
                assert systems.get(SNOMED) == INDIRECT_ENCOUNTER
                assert systems.get("https://ccm-ready.org/fhir/CodeSystem/care-program")
                assert concept["text"]


def test_every_provenance_has_an_author_and_on_behalf_of_for_practitioners(
    shapes: dict[str, dict[str, Any]],
) -> None:
    seen = 0
    for shape in shapes.values():
        for prov in _of(shape, "Provenance"):
            seen += 1
            types = [a["type"]["coding"][0]["code"] for a in prov["agent"]]
            assert "author" in types
            for agent in prov["agent"]:  # provenance-1
                who = agent["who"].get("reference", "")
                if who.startswith(("Practitioner/", "Device/")):
                    assert agent.get("onBehalfOf"), prov
    assert seen >= 6


def test_care_plan_category_assess_plan(shapes: dict[str, dict[str, Any]]) -> None:
    (plan,) = _of(shapes["care plan"], "CarePlan")
    codings = [c for cat in plan["category"] for c in cat["coding"]]
    assert {"system": "http://hl7.org/fhir/us/core/CodeSystem/careplan-category", "code": "assess-plan"} in [
        {"system": c["system"], "code": c["code"]} for c in codings
    ]


@pytest.mark.parametrize("name", ["note: time entry", "note: consent", "note: consent stopped"])
def test_notes_are_us_core_clinical_notes(shapes: dict[str, dict[str, Any]], name: str) -> None:
    doc = shapes[name]
    assert doc["status"] == "current"
    assert doc["type"]["coding"][0]["system"] == LOINC and doc["type"]["coding"][0]["code"]
    assert doc["category"][0]["coding"][0] == {
        "system": US_CORE_DOC_CATEGORY,
        "code": "clinical-note",
        "display": "Clinical Note",
    }
    assert doc["subject"] == {"reference": f"Patient/{PID}"}
    assert doc["date"] and doc["author"][0]["reference"] == NURSE
    assert doc["context"]["period"]["start"] and doc["context"]["period"]["end"]
    types = [c["attachment"]["contentType"] for c in doc["content"]]
    assert types == ["text/plain; charset=utf-8", "application/json"]
    readable = base64.b64decode(doc["content"][0]["attachment"]["data"]).decode()
    assert "recorded by CCM Ready" in readable


def test_time_note_is_readable_and_reads_back_as_the_same_entry(shapes: dict[str, dict[str, Any]]) -> None:
    doc = {**shapes["note: time entry"], "id": "doc1"}
    text = base64.b64decode(doc["content"][0]["attachment"]["data"]).decode()
    assert "Minutes: 25" in text and NURSE in text and "patient-call" in text
    assert doc["context"]["period"]["start"] == (NOW - timedelta(hours=3)).isoformat()
    assert note_facts(doc)["entry"]["entry_id"] == ENTRY
    facts = read_facts(merge_captured([doc]), PID)
    (entry,) = facts.time_entries
    assert (entry.minutes, entry.performer, entry.program) == (25, NURSE, "ccm")


def test_a_note_and_a_structured_write_of_one_entry_count_once(shapes: dict[str, dict[str, Any]]) -> None:
    structured = [e["resource"] for e in shapes["structured time entry"]["entry"]]
    structured = [{**r, "id": f"x{i}"} for i, r in enumerate(structured)]
    doc = {**shapes["note: time entry"], "id": "doc1"}
    ledger_facts = {"entry": _draft_json(), **PACK}
    merged = merge_captured([*structured, doc], [("time", ledger_facts)])
    assert len(read_facts(merged, PID).time_entries) == 1


def test_consent_note_reads_back_as_a_consent(shapes: dict[str, dict[str, Any]]) -> None:
    doc = {**shapes["note: consent"], "id": "doc2"}
    (consent,) = read_facts(merge_captured([doc]), PID).consents
    assert consent.status == "active" and consent.billing_practitioner == DOCTOR


def test_packet_carries_the_ledger_extract_with_chain_hashes(shapes: dict[str, dict[str, Any]]) -> None:
    comp = shapes["audit packet"]["entry"][0]["resource"]
    ext = next(e for e in comp["extension"] if e["url"].endswith("/ledger-extract"))
    data = json.loads(base64.b64decode(ext["valueAttachment"]["data"]))
    assert data["chain"]["ok"] and data["records"][0]["hash"] == data["chain"]["head"]
    section = next(s for s in comp["section"] if s["code"]["coding"][0]["code"] == "ledger")
    assert "Ledger chain verified" in section["text"]["div"]
