"""The ledger (append-only, hash-chained), the write profiles and profile-aware delivery (with fakes)."""

from __future__ import annotations

import itertools
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from fhir_mapping.write_note import time_note
from fhir_mapping.write_time import TimeEntryDraft, draft_to_json, entry_transaction, new_entry_id
from smart_app.capture.delivery import Delivery, capture
from smart_app.capture.ledger import GENESIS, Ledger
from smart_app.capture.outbox import Outbox
from smart_app.cli.commands import main
from smart_app.fhir.capabilities import ServerWrites, choose, server_writes
from smart_app.fhir.client import FhirError
from smart_app.packet.document import build_packet
from smart_app.packet.ledger_extract import extract

BASE = "http://ehr.test/fhir"
PID = "p1"
NURSE = "Practitioner/rn1"
NOW = datetime.now(UTC).replace(microsecond=0)
OUTCOME = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "not-supported"}]}


def facts(minutes: int = 20, entry_id: str | None = None) -> dict[str, Any]:
    d = draft(minutes, entry_id)
    return {"entry": draft_to_json(d), "pack_id": "cms-pfs-2026", "pack_version": "t"}


def draft(minutes: int = 20, entry_id: str | None = None) -> TimeEntryDraft:
    note = "Reviewed home glucose log (diabetes); adjusted metformin timing; recheck Friday."
    start = NOW - timedelta(hours=2)
    return TimeEntryDraft(entry_id or new_entry_id(), PID, NURSE, start, minutes, "ccm", "patient-call", note)


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger(tmp_path / "ledger.sqlite3")


def fill(ledger: Ledger, n: int = 4) -> list[str]:
    ids = [new_entry_id() for _ in range(n)]
    for i, rid in enumerate(ids):
        ledger.append(rid, "time", fhir_base=BASE, patient_id=PID, user=NURSE, facts=facts(10 + i, rid))
    return ids


# ------------------------------------------------------------------------------------ chain


def test_append_is_idempotent_and_chained(ledger: Ledger) -> None:
    ids = fill(ledger, 3)
    again = ledger.append(ids[0], "time", fhir_base=BASE, patient_id=PID, user=NURSE, facts=facts(99))
    assert again.facts["entry"]["minutes"] == 10  # the first record stays
    records = ledger.records()
    assert [r.seq for r in records] == [1, 2, 3]
    assert records[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(records))
    check = ledger.verify()
    assert check.ok and check.count == 3 and check.head == records[-1].hash


def _tamper(path: Path, sql: str, *args: Any) -> None:
    conn = sqlite3.connect(path)
    conn.execute(sql, args)
    conn.commit()
    conn.close()


def test_a_changed_record_is_named_exactly(ledger: Ledger) -> None:
    ids = fill(ledger)
    text = ledger.get(ids[2]).facts_text.replace('"minutes":12', '"minutes":45')  # type: ignore[union-attr]
    _tamper(ledger.path, "UPDATE ledger SET facts = ? WHERE id = ?", text, ids[2])
    check = ledger.verify()
    assert [(b.seq, b.id) for b in check.broken] == [(3, ids[2])]
    assert "altered" in check.broken[0].reason


def test_a_rehashed_change_breaks_the_next_link(ledger: Ledger) -> None:
    from smart_app.capture.ledger import record_hash

    ids = fill(ledger)
    rec = ledger.get(ids[1])
    assert rec is not None
    text = rec.facts_text.replace('"minutes":11', '"minutes":50')
    digest = record_hash(
        rec.seq, rec.id, rec.kind, rec.fhir_base, rec.patient_id, rec.user, rec.recorded, text, rec.prev_hash
    )
    _tamper(ledger.path, "UPDATE ledger SET facts = ?, hash = ? WHERE id = ?", text, digest, ids[1])
    check = ledger.verify()
    assert [(b.seq, b.id) for b in check.broken] == [(3, ids[2])]
    assert "link" in check.broken[0].reason


def test_a_deleted_record_is_reported_at_the_gap(ledger: Ledger) -> None:
    ids = fill(ledger)
    _tamper(ledger.path, "DELETE FROM ledger WHERE id = ?", ids[1])
    check = ledger.verify()
    assert {b.id for b in check.broken} == {ids[2]}


def test_cli_verify_names_the_tampered_record(ledger: Ledger, capsys: pytest.CaptureFixture[str]) -> None:
    ids = fill(ledger)
    assert main(["ledger", "verify", "--db", str(ledger.path)]) == 0
    assert "ledger OK: 4 records" in capsys.readouterr().out
    _tamper(ledger.path, "UPDATE ledger SET user_ref = ? WHERE id = ?", "Practitioner/someone-else", ids[3])
    assert main(["ledger", "verify", "--db", str(ledger.path)]) == 1
    out = capsys.readouterr().out
    assert f"record #4 id {ids[3]}" in out and ids[0] not in out
    assert main(["ledger", "show", "--db", str(ledger.path), "--fhir-base", BASE, "--patient", PID]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 4
    assert main(["ledger", "verify", "--db", str(ledger.path.parent / "none.sqlite3")]) == 2


def test_packet_reports_the_tampered_record(ledger: Ledger) -> None:
    ids = fill(ledger, 2)
    _tamper(ledger.path, "UPDATE ledger SET recorded = ? WHERE id = ?", "2020-01-01T00:00:00+00:00", ids[0])
    patient = {"resourceType": "Patient", "id": PID}
    packet = build_packet([patient], "2026-11", patient_id=PID, ledger=extract(ledger, BASE, PID))
    comp = packet.bundle["entry"][0]["resource"]
    section = next(s for s in comp["section"] if s["code"]["coding"][0]["code"] == "ledger")
    assert f"record #1 ({ids[0]})" in section["text"]["div"] and "BROKEN" in section["text"]["div"]
    assert ids[1] not in packet.ledger.status_text


# ------------------------------------------------------------------------------------ write profiles


def capability(*types: str, transaction: bool = True, reads_only: tuple[str, ...] = ()) -> dict[str, Any]:
    resources = [{"type": t, "interaction": [{"code": "read"}, {"code": "create"}]} for t in types]
    resources += [{"type": t, "interaction": [{"code": "read"}, {"code": "search-type"}]} for t in reads_only]
    rest: dict[str, Any] = {"mode": "server", "resource": resources}
    if transaction:
        rest["interaction"] = [{"code": "transaction"}]
    return {"resourceType": "CapabilityStatement", "rest": [rest]}


ALL = ("Encounter", "Task", "Provenance", "Consent", "DocumentReference")


def test_profiles_from_the_capability_statement_and_scopes() -> None:
    everything = server_writes(capability(*ALL))
    assert everything.transaction
    assert choose(everything, lambda t: True).by_kind == {
        "time": "structured",
        "correction": "structured",
        "consent": "structured",
        "consent-stop": "structured",
        "visit": "structured",
    }
    notes_only = server_writes(capability("DocumentReference", transaction=False, reads_only=("Encounter",)))
    chosen = choose(notes_only, lambda t: True)
    assert (chosen.profile("time"), chosen.profile("consent"), chosen.profile("correction")) == (
        "note",
        "note",
        "none",
    )
    assert "does not accept Encounter" in chosen.reasons["time"]
    nothing = server_writes(capability(reads_only=ALL))
    assert choose(nothing, lambda t: True).summary == "none"
    # the scopes granted at launch count too
    assert choose(everything, lambda t: t == "DocumentReference").profile("time") == "note"
    assert choose(everything, lambda t: False).to_json()["time"] == "none"
    # a refusal learned at run time
    refused = {"Encounter": ("note", "the EHR refused Encounter (HTTP 405)")}
    assert choose(everything, lambda t: True, refused).profile("time") == "note"
    assert choose(everything, lambda t: True, refused).profile("consent") == "structured"
    # no readable statement: try, and learn from refusals
    assert choose(server_writes(None), lambda t: True).summary == "structured"
    assert ServerWrites(None).allows("Anything")


# ------------------------------------------------------------------------------------ delivery


class RefusingServer:
    """An EHR refusing some resource types with 405 + OperationOutcome (and transactions entirely)."""

    def __init__(self, refuses: set[str], status: int = 405) -> None:
        self.refuses = refuses
        self.status = status
        self.stored: list[dict[str, Any]] = []

    def transaction(self, bundle: dict[str, Any]) -> dict[str, Any]:
        raise FhirError(405, "transactions are not supported", OUTCOME)

    def create(self, resource: dict[str, Any], if_none_exist: str | None = None) -> dict[str, Any]:
        rtype = resource["resourceType"]
        if rtype in self.refuses:
            raise FhirError(self.status, f"{rtype} is not accepted from apps", OUTCOME)
        stored = {**resource, "id": f"{rtype.lower()}{len(self.stored)}"}
        self.stored.append(stored)
        return stored

    def search(self, resource_type: str, params: Any = None) -> list[dict[str, Any]]:
        return []


def queued(ledger: Ledger, outbox: Outbox, profile: str = "structured") -> str:
    d = draft(25)
    bundle = entry_transaction(d, user=NURSE, recorded=NOW, pack_id="cms-pfs-2026", pack_version="t")
    capture(
        ledger,
        outbox,
        d.entry_id,
        "time",
        fhir_base=BASE,
        patient_id=PID,
        user=NURSE,
        facts={"entry": draft_to_json(d)},
        payload={"bundle": bundle, "note": time_note(d, NOW)},
        summary={"minutes": 25},
        mode="open",
        profile=profile,
    )
    return d.entry_id


def test_a_refused_encounter_moves_the_entry_to_a_note_and_is_remembered(
    ledger: Ledger, tmp_path: Path
) -> None:
    delivery = Delivery(ledger)
    outbox = Outbox(tmp_path / "outbox.sqlite3", sender=delivery.route)
    server = RefusingServer({"Encounter"})
    first = queued(ledger, outbox)
    item = outbox.send(first, server)
    assert item is not None and item.state == "saved"
    assert item.result == ["DocumentReference/documentreference0"]
    where = delivery.where(item)
    assert where.profile == "note" and "refused Encounter (HTTP 405" in where.moved
    assert ledger.refusals(BASE)["Encounter"][0] == "note"
    # the next entry goes straight to a note: no second attempt at Encounter
    second = queued(ledger, outbox)
    before = len(server.stored)
    assert outbox.send(second, server).state == "saved"  # type: ignore[union-attr]
    assert [r["resourceType"] for r in server.stored[before:]] == ["DocumentReference"]
    kinds = [r.kind for r in ledger.records(BASE, PID)]
    assert kinds == ["time", "delivery", "time", "delivery"]


def test_a_server_refusing_everything_keeps_the_entry_in_the_ledger(ledger: Ledger, tmp_path: Path) -> None:
    delivery = Delivery(ledger)
    outbox = Outbox(tmp_path / "outbox.sqlite3", sender=delivery.route)
    server = RefusingServer({"Encounter", "Task", "Provenance", "DocumentReference"}, status=403)
    item = outbox.send(queued(ledger, outbox), server)
    assert item is not None and item.state == "saved" and item.result == ["ledger-only"]
    assert delivery.where(item).profile == "none"
    assert server.stored == []
    assert outbox.due() == []  # nothing left to retry


def test_transient_failures_are_still_retried_not_moved(ledger: Ledger, tmp_path: Path) -> None:
    delivery = Delivery(ledger)
    outbox = Outbox(tmp_path / "outbox.sqlite3", sender=delivery.route)
    server = RefusingServer({"Encounter"}, status=503)
    item = outbox.send(queued(ledger, outbox), server)
    assert item is not None and item.state == "pending"
    assert ledger.refusals(BASE) == {}


def test_a_422_without_an_operation_outcome_is_a_rejection_not_a_move(ledger: Ledger, tmp_path: Path) -> None:
    class Odd(RefusingServer):
        def create(self, resource: dict[str, Any], if_none_exist: str | None = None) -> dict[str, Any]:
            raise FhirError(422, "unprocessable", None)

    delivery = Delivery(ledger)
    outbox = Outbox(tmp_path / "outbox.sqlite3", sender=delivery.route)
    item = outbox.send(queued(ledger, outbox), Odd(set()))
    assert item is not None and item.state == "rejected"
    assert ledger.refusals(BASE) == {}


def test_the_worklist_counts_ledger_entries_for_the_population(tmp_path: Path) -> None:
    import json

    from rules.month import Month
    from smart_app.program.population import evaluate_population

    export = tmp_path / "Patient.ndjson"
    export.write_text(json.dumps({"resourceType": "Patient", "id": PID}) + "\n")
    month = str(Month.of(NOW - timedelta(hours=2)))
    captured = {PID: [("time", facts(20)), ("time", facts(15))]}
    (alone,) = evaluate_population([export], [month], workdir=tmp_path)
    (merged,) = evaluate_population([export], [month], workdir=tmp_path, captured=captured)
    assert len(alone.facts.time_entries) == 0
    assert sum(t.minutes for t in merged.facts.time_entries) == 35


def test_a_stop_the_ehr_applied_is_not_counted_twice(ledger: Ledger) -> None:
    from smart_app.readiness.captured import captured_by_patient, captured_pairs

    stop = {"consent": {"consent_id": "s1"}}
    applied = ledger.append("s1", "consent-stop", fhir_base=BASE, patient_id=PID, user=NURSE, facts=stop)
    ledger.record_delivery(applied, "structured", ["Consent/c9"])
    kept = ledger.append("s2", "consent-stop", fhir_base=BASE, patient_id=PID, user=NURSE, facts=stop)
    ledger.record_delivery(kept, "none", [])
    assert [k for k, _ in captured_pairs(ledger, BASE, PID)] == ["consent-stop"]
    assert captured_by_patient(ledger, BASE) == {PID: [("consent-stop", stop)]}


def test_an_item_queued_before_the_ledger_is_kept_as_rejected_not_dropped(
    ledger: Ledger, tmp_path: Path
) -> None:
    delivery = Delivery(ledger)
    outbox = Outbox(tmp_path / "outbox.sqlite3", sender=delivery.route)
    d = draft(25)
    bundle = entry_transaction(d, user=NURSE, recorded=NOW, pack_id="cms-pfs-2026", pack_version="t")
    outbox.add(
        d.entry_id, "time", fhir_base=BASE, patient_id=PID, payload={"bundle": bundle}
    )  # no note either
    item = outbox.send(d.entry_id, RefusingServer({"Encounter"}))
    assert item is not None and item.state == "rejected" and "not in the ledger" in item.last_error
