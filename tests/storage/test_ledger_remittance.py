"""The capture ledger and the remittance store on the storage layer: SQLite and PostgreSQL (`target`)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fhir_mapping.write_note import time_note
from fhir_mapping.write_time import TimeEntryDraft, draft_to_json, entry_transaction, new_entry_id
from smart_app.capture.delivery import Delivery, capture
from smart_app.capture.ledger import Ledger
from smart_app.capture.outbox import Outbox, OutboxWorker
from smart_app.cli.commands import main
from smart_app.fhir.client import FhirUnavailable
from smart_app.program.remit_load import load_files
from smart_app.program.remittance import RemittanceError
from smart_app.program.remittance_store import RemittanceStore
from smart_app.readiness.captured import captured_by_patient, captured_pairs
from smart_app.storage import as_database
from tests.storage.conftest import Target
from tests.unit.test_outbox import BASE, Clock, FakeServer
from tests.unit.test_payer_remittance import _claims, files

NURSE = "Practitioner/rn1"
NOW = datetime.now(UTC).replace(microsecond=0)


def _draft(minutes: int = 20) -> TimeEntryDraft:
    note = "Reviewed home glucose log (diabetes); adjusted metformin timing; recheck Friday."
    return TimeEntryDraft(
        new_entry_id(), "p1", NURSE, NOW - timedelta(hours=2), minutes, "ccm", "patient-call", note
    )


def _append(ledger: Ledger, minutes: int = 20) -> str:
    d = _draft(minutes)
    ledger.append(
        d.entry_id, "time", fhir_base=BASE, patient_id="p1", user=NURSE, facts={"entry": draft_to_json(d)}
    )
    return d.entry_id


def _is_url(target: Target) -> bool:
    return "://" in target()


# ----------------------------------------------------------------------------- ledger


def test_ledger_appends_from_two_instances_keep_one_chain(target: Target) -> None:
    one, other = Ledger(target()), Ledger(target())
    ids: list[str] = []
    lock = threading.Lock()

    def append(ledger: Ledger) -> None:
        for _ in range(8):
            rid = _append(ledger)
            with lock:
                ids.append(rid)

    threads = [threading.Thread(target=append, args=(ledger,)) for ledger in (one, other, one, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check = other.verify()
    assert check.ok and check.count == 32
    assert [r.seq for r in one.records()] == list(range(1, 33))
    assert {r.id for r in one.records(BASE, "p1")} == set(ids)
    again = one.append(ids[0], "time", fhir_base=BASE, patient_id="p1", user=NURSE, facts={"x": 1})
    assert again.facts != {"x": 1} and other.verify().count == 32  # a repeated id changes nothing


def test_ledger_tampering_is_named_on_both_back_ends(
    target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger = Ledger(target())
    for m in (10, 20, 30):
        _append(ledger, m)
    assert main(["ledger", "verify", "--db", target()]) == 0
    assert "ledger OK: 3 records" in capsys.readouterr().out
    with as_database(target()).transaction() as tx:
        tx.run("UPDATE ledger SET facts = ? WHERE seq = ?", ('{"entry": {"minutes": 99}}', 2))
    broken = ledger.verify().broken
    assert [(b.seq, "altered" in b.reason) for b in broken] == [(2, True)]
    assert main(["ledger", "verify", "--db", target()]) == 1
    assert "record #2" in capsys.readouterr().out


def test_ledger_cli_follows_the_apps_database_url(
    target: Target, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if _is_url(target):
        monkeypatch.setenv("CCM_READY_DATABASE_URL", target())
        Ledger.for_config({"DATABASE_URL": target(), "DATA_DIR": str(tmp_path / "unused")})
        args = ["ledger", "show", "--fhir-base", BASE, "--patient", "Patient/p1"]
    else:
        Ledger.for_config({"DATA_DIR": str(tmp_path)})
        args = ["ledger", "show", "--data-dir", str(tmp_path), "--fhir-base", BASE, "--patient", "p1"]
    rid = _append(Ledger(target()) if _is_url(target) else Ledger(tmp_path / "ledger.sqlite3"))
    assert main(args) == 0
    assert rid in capsys.readouterr().out
    assert not (tmp_path / "unused").exists()  # with a database URL nothing is written under DATA_DIR


def test_write_profiles_learned_by_one_instance_are_used_by_another(target: Target) -> None:
    Ledger(target()).set_profile(BASE + "/", "Encounter", "note", "the EHR refused Encounter (HTTP 405)")
    assert Ledger(target()).refusals(BASE) == {"Encounter": ("note", "the EHR refused Encounter (HTTP 405)")}


def test_the_panel_cds_and_worklist_read_what_the_ledger_kept(target: Target) -> None:
    """smart_app.readiness.captured (what the panel, the CDS card and the worklist read), both engines."""
    ledger = Ledger(target())
    kept = ledger.append(
        "e1", "time", fhir_base=BASE, patient_id="p1", user=NURSE, facts={"entry": draft_to_json(_draft(25))}
    )
    ledger.record_delivery(kept, "none", [])  # the EHR took nothing: the ledger is the only record
    pairs = captured_pairs(Ledger(target()), BASE, "p1")
    assert [kind for kind, _facts in pairs] == ["time"]
    assert captured_by_patient(Ledger(target()), BASE) == {"p1": pairs}


def test_restart_with_captured_entries_pending_loses_none(target: Target) -> None:
    """Entries captured (ledger + outbox), the EHR down, two being sent when the app stopped: after a
    restart every entry is delivered once and its delivery recorded in the ledger, the chain intact."""
    clock = Clock()
    ledger = Ledger(target())
    outbox = Outbox(target(), clock=clock, sender=Delivery(ledger).route)
    ids = []
    for i, profile in enumerate(("structured",) * 4 + ("none",)):  # the last: an EHR that takes nothing
        d = _draft(20 + i)
        bundle = entry_transaction(d, user=NURSE, recorded=NOW, pack_id="p", pack_version="v")
        capture(
            ledger,
            outbox,
            d.entry_id,
            "time",
            fhir_base=BASE,
            patient_id="p1",
            user=NURSE,
            facts={"entry": draft_to_json(d)},
            payload={"bundle": bundle, "note": time_note(d, NOW)},
            summary={"minutes": 20 + i},
            mode="open",
            profile=profile,
        )
        ids.append(d.entry_id)
    down = FakeServer()
    down.failures = [FhirUnavailable(None, "down")] * 4
    for item_id in ids[:4]:
        outbox.send(item_id, down)
    outbox.claim_due(2)  # two were being sent when the app stopped
    outbox.close()
    ledger.close()

    ledger = Ledger(target())  # the app restarted (new process)
    outbox = Outbox(target(), clock=clock, sender=Delivery(ledger).route)
    assert outbox.backlog()[0] == 5
    clock.now += 3600
    server = FakeServer()
    assert OutboxWorker(outbox, lambda item: server).run_once() == 5
    assert outbox.counts() == {"saved": 5}
    assert sorted(e["identifier"][0]["value"] for e in server.of("Encounter")) == sorted(ids[:4])
    deliveries = ledger.deliveries(BASE, "p1")
    assert set(deliveries) == set(ids)
    assert deliveries[ids[4]].facts["written"] == []  # kept in the ledger only
    assert ledger.verify().ok


# ----------------------------------------------------------------------------- remittances


def _store(target: Target) -> RemittanceStore:
    store = RemittanceStore(target())
    store.record_claims(_claims())
    return store


def test_remittance_loads_are_idempotent_and_all_or_nothing(target: Target) -> None:
    store = _store(target)
    batch = [(n, t.encode()) for n, t in files().items()]
    good, bad = files()["acme-1.835"], files()["medicare-1.835"].replace("SE*", "SE*9", 1)
    with pytest.raises(RemittanceError, match=r"bad\.835: segment SE"):
        load_files(store, [("good.835", good.encode()), ("bad.835", bad.encode())])
    assert store.counts() == (0, 0)
    first = load_files(store, batch)
    assert first.summary() == "files=3 claims=6 lines=9 paid=3 denied=3 adjusted=3 duplicates=0"
    other = RemittanceStore(target())  # another instance
    assert load_files(other, batch).summary().endswith("duplicates=3")
    assert other.lines() == store.lines() and other.counts() == (3, 9)
    assert {c.claim_id for c in other.claims()} == {c.claim_id for c in _claims()}


def test_two_instances_loading_the_same_files_at_once_store_them_once(target: Target) -> None:
    stores = [_store(target), RemittanceStore(target())]
    batch = [(n, t.encode()) for n, t in files().items()]
    results = []

    def load(store: RemittanceStore) -> None:
        results.append(load_files(store, batch))

    threads = [threading.Thread(target=load, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.duplicates for r in results) == [0, 3]
    assert stores[0].counts() == (3, 9)


def test_remit_cli_keeps_remittances_with_the_apps_state(
    target: Target, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = []
    for name, text in files().items():
        (tmp_path / name).write_text(text)
        paths.append(str(tmp_path / name))
    if _is_url(target):
        monkeypatch.setenv("CCM_READY_DATABASE_URL", target())
        monkeypatch.setenv("CCM_READY_DATA_DIR", str(tmp_path / "unused"))
        args = ["remit", *paths]
    else:
        args = ["remit", "--data-dir", str(Path(target()).parent), *paths]
        target = lambda: str(Path(args[2]) / "remittance.sqlite3")  # noqa: E731
    assert main(args) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("files=3 claims=6 lines=9 ")
    assert main(args) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith("duplicates=3")
    assert RemittanceStore(target()).counts() == (3, 9)
    assert not (tmp_path / "unused").exists()
