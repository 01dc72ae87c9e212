"""Write-back against a real sekmet-fhir: time entries, corrections, consent; faults; concurrency.

Every kind of write is read back, validated with fhirclient's R4 models (strict) and read by the rules core.
Fault tests stop the server mid-burst, answer 500s and time out through a loopback proxy; after recovery each
entry must be on the server exactly once.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests
from fhirclient.models.consent import Consent as FcConsent
from fhirclient.models.encounter import Encounter as FcEncounter
from fhirclient.models.provenance import Provenance as FcProvenance
from fhirclient.models.task import Task as FcTask
from flask import Flask
from flask.testing import FlaskClient

from fhir_mapping.reader import read_facts
from fhir_mapping.write_time import TIME_ENTRY_ID, TimeEntryDraft, entry_transaction, new_entry_id
from rules.evaluate import evaluate
from rules.month import Month
from smart_app.capture.outbox import Outbox, OutboxWorker
from smart_app.context import LaunchContext
from smart_app.demo.local_fhir import SekmetServer, free_port, start_sekmet
from smart_app.fhir.client import FhirClient
from tests.support import app as support_app

pytestmark = pytest.mark.integration

UTC = ZoneInfo("UTC")
NURSE = "Practitioner/rn-wb"
DOCTOR = "Practitioner/dr-wb"
GOOD_NOTE = "Reviewed home glucose log (diabetes); adjusted metformin timing; recheck readings Friday."


# ------------------------------------------------------------------------------------ helpers


def make_app(tmp_path: Path, base: str, patient: str, **config: Any) -> tuple[Flask, FlaskClient, str]:
    app = support_app.make_app(tmp_path, **{"TIMEZONE": "UTC", "FHIR_TIMEOUT": 3.0, **config})
    client, csrf = support_app.launched(app, support_app.open_launch(base, patient, NURSE))
    return app, client, csrf


def post_json(client: FlaskClient, csrf: str, url: str, body: dict[str, Any]) -> Any:
    return client.post(url, json=body, headers={"X-CSRF-Token": csrf, "Accept": "application/json"})


def new_patient(fhir: FhirClient, name: str) -> str:
    created = fhir.create(
        {
            "resourceType": "Patient",
            "name": [{"family": name}],
            "generalPractitioner": [{"reference": DOCTOR}],
        }
    )
    return str(created["id"])


def entry_moment(hours_ago: float) -> datetime:
    """A time in the past, inside the current month when possible (so the entry is not 'late')."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    moment = now - timedelta(hours=hours_ago)
    first = now.replace(day=1, hour=0, minute=0)
    return moment if moment >= first else now - timedelta(minutes=30)


def by_identifier(fhir: FhirClient, rtype: str, system: str, value: str) -> list[dict[str, Any]]:
    return fhir.search(rtype, {"identifier": f"{system}|{value}"})


def draft(patient: str, start: datetime, minutes: int = 5, entry_id: str | None = None) -> TimeEntryDraft:
    return TimeEntryDraft(
        entry_id or new_entry_id(), patient, NURSE, start, minutes, "ccm", "patient-call", GOOD_NOTE
    )


def queue(outbox: Outbox, base: str, d: TimeEntryDraft) -> None:
    bundle = entry_transaction(
        d, user=NURSE, recorded=datetime.now(UTC), pack_id="cms-pfs-2026", pack_version="test"
    )
    outbox.add(
        d.entry_id,
        "time",
        fhir_base=base,
        patient_id=d.patient_id,
        payload={"bundle": bundle},
        summary={"minutes": d.minutes},
    )


def drain(worker: OutboxWorker, outbox: Outbox, ids: list[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        worker.run_once()
        states = {outbox.get(i).state for i in ids}  # type: ignore[union-attr]
        if states == {"saved"}:
            return
        time.sleep(0.2)
    raise AssertionError(f"not all saved: {outbox.counts()}")


def assert_exactly_once(fhir: FhirClient, patient: str, ids: list[str]) -> None:
    encounters = fhir.search("Encounter", {"patient": f"Patient/{patient}", "_count": "200"})
    seen = [
        i["value"] for e in encounters for i in e.get("identifier", []) if i.get("system") == TIME_ENTRY_ID
    ]
    assert sorted(seen) == sorted(ids)
    tasks = fhir.search("Task", {"patient": f"Patient/{patient}", "_count": "200"})
    assert len(tasks) == len(ids)
    for enc in encounters:
        provs = fhir.search("Provenance", {"target": f"Encounter/{enc['id']}"})
        assert len(provs) == 1, enc["id"]


@pytest.fixture(scope="module")
def own_sekmet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SekmetServer]:
    """A server of our own: the fault tests stop and restart it."""
    server = start_sekmet(workdir=tmp_path_factory.mktemp("sekmet-faults"))
    try:
        yield server
    finally:
        server.stop()


# ------------------------------------------------------------------------------------ round trips


def test_time_entry_written_read_back_valid_and_counted(sekmet: SekmetServer, tmp_path: Path) -> None:
    fhir = FhirClient(sekmet.base)
    patient = new_patient(fhir, "Writeback")
    _, client, csrf = make_app(tmp_path, sekmet.base, patient)
    start = entry_moment(3)
    body = {
        "date": start.date().isoformat(),
        "start": start.strftime("%H:%M"),
        "minutes": "25",
        "program": "ccm",
        "activity": "patient-call",
        "note": GOOD_NOTE,
    }
    resp = post_json(client, csrf, "/time", body)
    assert resp.status_code == 201, resp.get_json()
    answer = resp.get_json()
    assert answer["state"] == "saved"

    enc = by_identifier(fhir, "Encounter", TIME_ENTRY_ID, answer["id"])
    assert len(enc) == 1
    FcEncounter(enc[0], strict=True)
    assert enc[0]["period"]["end"] and enc[0]["length"] == {
        "value": 25,
        "unit": "min",
        "system": "http://unitsofmeasure.org",
        "code": "min",
    }
    tasks = fhir.search("Task", {"encounter": f"Encounter/{enc[0]['id']}"})
    assert len(tasks) == 1
    FcTask(tasks[0], strict=True)
    assert tasks[0]["note"][0]["text"] == GOOD_NOTE
    provs = fhir.search("Provenance", {"target": f"Encounter/{enc[0]['id']}"})
    assert len(provs) == 1
    FcProvenance(provs[0], strict=True)
    assert provs[0]["agent"][0]["who"]["reference"] == NURSE
    assert provs[0]["policy"][0].startswith("https://ccm-ready.org/fhir/policy/")

    facts = read_facts([*enc, *tasks], patient)
    assert len(facts.time_entries) == 1
    entry = facts.time_entries[0]
    assert (entry.minutes, entry.performer, entry.notes) == (25, NURSE, (GOOD_NOTE,))
    verdict = evaluate(facts, Month.of(start))
    assert dict(verdict.minutes.by_program).get("ccm") == 25

    again = post_json(client, csrf, "/time", {**body, "id": answer["id"]})
    assert again.status_code == 201
    assert len(by_identifier(fhir, "Encounter", TIME_ENTRY_ID, answer["id"])) == 1


def test_overlapping_entry_is_refused_with_a_message(sekmet: SekmetServer, tmp_path: Path) -> None:
    fhir = FhirClient(sekmet.base)
    patient = new_patient(fhir, "Overlap")
    _, client, csrf = make_app(tmp_path, sekmet.base, patient)
    start = entry_moment(5)
    body = {
        "date": start.date().isoformat(),
        "start": start.strftime("%H:%M"),
        "minutes": "30",
        "note": GOOD_NOTE,
    }
    assert post_json(client, csrf, "/time", body).status_code == 201
    later = start + timedelta(minutes=10)
    resp = post_json(
        client, csrf, "/time", {**body, "start": later.strftime("%H:%M"), "date": later.date().isoformat()}
    )
    assert resp.status_code == 422
    assert any(e["code"] == "overlap" for e in resp.get_json()["errors"])


def test_correction_marks_entered_in_error_and_adds_replacement(sekmet: SekmetServer, tmp_path: Path) -> None:
    fhir = FhirClient(sekmet.base)
    patient = new_patient(fhir, "Correction")
    _, client, csrf = make_app(tmp_path, sekmet.base, patient)
    start = entry_moment(6)
    body = {
        "date": start.date().isoformat(),
        "start": start.strftime("%H:%M"),
        "minutes": "50",
        "note": GOOD_NOTE,
    }
    first = post_json(client, csrf, "/time", body).get_json()
    enc_id = by_identifier(fhir, "Encounter", TIME_ENTRY_ID, first["id"])[0]["id"]

    fix = {
        "reason": "minutes mistyped: 15 not 50",
        "date": body["date"],
        "start": body["start"],
        "minutes": "15",
        "program": "ccm",
        "activity": "patient-call",
        "note": GOOD_NOTE,
    }
    resp = post_json(client, csrf, f"/time/{enc_id}/correct", fix)
    assert resp.status_code == 201, resp.get_json()

    old = fhir.read("Encounter", enc_id)
    assert old["status"] == "entered-in-error"
    assert old["length"]["value"] == 50  # content unchanged: append-only
    FcEncounter(old, strict=True)
    encounters = fhir.search("Encounter", {"patient": f"Patient/{patient}"})
    tasks = fhir.search("Task", {"patient": f"Patient/{patient}"})
    assert len(encounters) == 2 and len(tasks) == 2
    old_task = next(t for t in tasks if t["encounter"]["reference"] == f"Encounter/{enc_id}")
    assert old_task["status"] == "entered-in-error"
    assert old_task["statusReason"]["text"] == fix["reason"]
    FcTask(old_task, strict=True)
    provs = fhir.search("Provenance", {"target": f"Encounter/{enc_id}"})
    update = [p for p in provs if p["activity"]["coding"][0]["code"] == "UPDATE"]
    assert len(update) == 1 and update[0]["reason"][0]["text"] == fix["reason"]
    FcProvenance(update[0], strict=True)

    facts = read_facts([*encounters, *tasks], patient)
    verdict = evaluate(facts, Month.of(start))
    assert dict(verdict.minutes.by_program).get("ccm") == 15

    # A second correction of the same entry writes nothing new.
    post_json(client, csrf, f"/time/{enc_id}/correct", {"reason": "again"})
    assert len(fhir.search("Provenance", {"target": f"Encounter/{enc_id}"})) == len(provs)


def test_consent_written_read_back_valid_and_read_by_rules(sekmet: SekmetServer, tmp_path: Path) -> None:
    fhir = FhirClient(sekmet.base)
    patient = new_patient(fhir, "Consent")
    _, client, csrf = make_app(tmp_path, sekmet.base, patient)
    today = datetime.now(UTC).date()
    body = {
        "consent_id": new_entry_id(),
        "decision": "given",
        "method": "verbal",
        "date": today.isoformat(),
        "billing_practitioner": DOCTOR,
        "disclosures": ["ccm-available", "cost-sharing", "one-practitioner", "right-to-stop"],
    }
    resp = post_json(client, csrf, "/consent", body)
    assert resp.status_code == 201, resp.get_json()
    assert post_json(client, csrf, "/consent", body).status_code == 201
    consents = fhir.search("Consent", {"patient": f"Patient/{patient}"})
    assert len(consents) == 1
    FcConsent(consents[0], strict=True)
    provs = fhir.search("Provenance", {"target": f"Consent/{consents[0]['id']}"})
    assert len(provs) == 1
    facts = read_facts(consents, patient)
    assert len(facts.consents) == 1
    record = facts.consents[0]
    assert record.status == "active"
    assert set(record.disclosures) == set(body["disclosures"])
    assert (record.billing_practitioner, record.obtained_by, record.method) == (DOCTOR, NURSE, "verbal")

    missing = post_json(client, csrf, "/consent", {**body, "consent_id": new_entry_id(), "disclosures": []})
    assert missing.status_code == 422
    future = post_json(
        client,
        csrf,
        "/consent",
        {**body, "consent_id": new_entry_id(), "date": (today + timedelta(days=2)).isoformat()},
    )
    assert future.status_code == 422
    stop = {**body, "consent_id": new_entry_id(), "decision": "stopped", "disclosures": []}
    assert post_json(client, csrf, "/consent", stop).status_code == 201
    assert post_json(client, csrf, "/consent", {**stop, "consent_id": new_entry_id()}).status_code == 201
    (after,) = fhir.search("Consent", {"patient": f"Patient/{patient}"})  # the same Consent, now stopped
    assert after["id"] == consents[0]["id"] and after["status"] == "inactive"
    assert after["provision"]["period"]["end"] == today.isoformat()
    assert after["dateTime"] == consents[0]["dateTime"]  # obtained when it was: earlier minutes still count
    FcConsent(after, strict=True)
    stop_provs = fhir.search("Provenance", {"target": f"Consent/{after['id']}"})
    assert len(stop_provs) == 2
    assert any("stopped" in (p.get("reason") or [{}])[0].get("text", "") for p in stop_provs)
    (stopped_record,) = read_facts([after], patient).consents
    assert stopped_record.status == "inactive" and stopped_record.stop_date is not None
    verdict = evaluate(read_facts([fhir.read("Patient", patient), after], patient), Month.of(today))
    assert any(f.rule == "consent.stop-effective" for f in verdict.findings)


def test_read_only_launch_writes_nothing_to_the_ehr(sekmet: SekmetServer, tmp_path: Path) -> None:
    """No write scope: write profile *none*, the entry is kept in the app's ledger only."""
    fhir = FhirClient(sekmet.base)
    patient = new_patient(fhir, "ReadOnly")
    app = support_app.make_app(tmp_path)
    ctx = LaunchContext(
        mode="ehr",
        fhir_base=sekmet.base,
        patient_id=patient,
        user=NURSE,
        granted_scopes=frozenset({"patient/*.rs", "launch"}),
    )
    client, csrf = support_app.launched(app, ctx)
    start = entry_moment(2)
    body = {"date": start.date().isoformat(), "start": start.strftime("%H:%M"), "minutes": "5"}
    body["note"] = GOOD_NOTE
    resp = post_json(client, csrf, "/time", body)
    assert resp.status_code == 201 and resp.get_json()["where"]["profile"] == "none", resp.get_json()
    assert "ledger" in resp.get_json()["message"]
    assert fhir.search("Encounter", {"patient": f"Patient/{patient}"}) == []
    assert fhir.search("DocumentReference", {"patient": f"Patient/{patient}"}) == []


# ------------------------------------------------------------------------------------ faults


def test_server_stopped_mid_burst_then_every_entry_once(own_sekmet: SekmetServer, tmp_path: Path) -> None:
    fhir = FhirClient(own_sekmet.base)
    patient = new_patient(fhir, "Burst")
    outbox = Outbox(tmp_path / "outbox.sqlite3", backoff=0.05, max_backoff=0.5)
    sender = FhirClient(own_sekmet.base, timeout=3, max_retries=0)
    worker = OutboxWorker(outbox, lambda item: sender)
    base_time = entry_moment(10)
    drafts = [draft(patient, base_time + timedelta(minutes=6 * i)) for i in range(30)]
    for i, d in enumerate(drafts):
        queue(outbox, own_sekmet.base, d)
        if i == 12:
            own_sekmet.stop()
        after = outbox.send(d.entry_id, sender)
        assert after is not None
        assert after.state == ("saved" if i < 12 else "pending")
    assert outbox.counts().get("pending") == 18
    own_sekmet.restart()
    drain(worker, outbox, [d.entry_id for d in drafts])
    assert_exactly_once(fhir, patient, [d.entry_id for d in drafts])


class FaultProxy:
    """A loopback HTTP proxy in front of the FHIR server: `mode` = pass | fail500 | commit-then-500 | slow."""

    def __init__(self, upstream: str, delay: float = 4.0) -> None:
        self.upstream = upstream.rstrip("/")
        self.mode = "pass"
        self.delay = delay
        self.hits = 0
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                proxy.hits += 1
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if proxy.mode == "fail500":
                    self._send(
                        500,
                        b'{"resourceType":"OperationOutcome","issue":[{"severity":"error",'
                        b'"code":"exception","diagnostics":"injected failure"}]}',
                        {},
                    )
                    return
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")
                }
                upstream = requests.request(
                    self.command,
                    proxy.upstream + self.path.removeprefix("/fhir"),
                    data=body,
                    headers=headers,
                    timeout=30,
                )
                if proxy.mode == "commit-then-500":
                    self._send(500, b"upstream answer lost", {})
                    return
                if proxy.mode == "slow":
                    time.sleep(proxy.delay)
                self._send(
                    upstream.status_code,
                    upstream.content,
                    {"Content-Type": upstream.headers.get("Content-Type", "application/fhir+json")},
                )

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout)

            do_GET = do_POST = do_PUT = _forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}/fhir"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy(own_sekmet: SekmetServer) -> Iterator[FaultProxy]:
    if not own_sekmet.running():
        own_sekmet.restart()
    p = FaultProxy(own_sekmet.base)
    try:
        yield p
    finally:
        p.close()


@pytest.mark.parametrize("mode", ["fail500", "commit-then-500", "slow"])
def test_500s_and_timeouts_then_every_entry_once(
    own_sekmet: SekmetServer, proxy: FaultProxy, tmp_path: Path, mode: str
) -> None:
    fhir = FhirClient(own_sekmet.base)
    patient = new_patient(fhir, f"Fault-{mode}")
    outbox = Outbox(tmp_path / "outbox.sqlite3", backoff=0.05, max_backoff=0.5)
    sender = FhirClient(proxy.base, timeout=1.0, max_retries=1, backoff=0.01)
    worker = OutboxWorker(outbox, lambda item: sender)
    base_time = entry_moment(20)
    drafts = [draft(patient, base_time + timedelta(minutes=6 * i)) for i in range(8)]
    proxy.mode = mode
    for d in drafts:
        queue(outbox, proxy.base, d)
        after = outbox.send(d.entry_id, sender)
        assert after is not None and after.state == "pending", (mode, after)
        assert after.last_error
    proxy.mode = "pass"
    drain(worker, outbox, [d.entry_id for d in drafts])
    if mode == "slow":
        time.sleep(proxy.delay)  # let the slow answers finish before counting
    assert_exactly_once(fhir, patient, [d.entry_id for d in drafts])


def test_twenty_concurrent_writers_every_entry_once(own_sekmet: SekmetServer, tmp_path: Path) -> None:
    if not own_sekmet.running():
        own_sekmet.restart()
    fhir = FhirClient(own_sekmet.base)
    patient = new_patient(fhir, "Concurrent")
    base_time = entry_moment(30)
    shared = [draft(patient, base_time + timedelta(minutes=6 * i)) for i in range(10)]
    own = [
        [draft(patient, base_time + timedelta(minutes=60 + 6 * (10 * w + i))) for i in range(2)]
        for w in range(20)
    ]
    path = tmp_path / "outbox.sqlite3"
    errors: list[BaseException] = []
    barrier = threading.Barrier(20)

    def writer(w: int) -> Callable[[], None]:
        def run() -> None:
            try:
                outbox = Outbox(path, backoff=0.05, max_backoff=0.2)  # like separate app processes
                client = FhirClient(own_sekmet.base, timeout=10)
                barrier.wait(timeout=120)
                mine = [*shared, *own[w]]
                for d in mine:
                    queue(outbox, own_sekmet.base, d)
                    outbox.send(d.entry_id, client)
                    # Also race raw transactions of the same entry past the outbox's lease.
                    if w % 5 == 0:
                        client.transaction(
                            entry_transaction(
                                d,
                                user=NURSE,
                                recorded=datetime.now(UTC),
                                pack_id="cms-pfs-2026",
                                pack_version="test",
                            )
                        )
                drain(OutboxWorker(outbox, lambda item: client), outbox, [d.entry_id for d in mine])
            except BaseException as exc:
                errors.append(exc)
                barrier.abort()  # the others fail fast instead of waiting for this writer forever

        return run

    threads = [threading.Thread(target=writer(w)) for w in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    ids = [d.entry_id for d in shared] + [d.entry_id for group in own for d in group]
    assert_exactly_once(fhir, patient, ids)
    assert json.dumps(Outbox(path).counts()) == json.dumps({"saved": len(ids)})


# ------------------------------------------------------------------------------------ CSV import


def test_import_time_cli_writes_once_and_reports_bad_rows(
    sekmet: SekmetServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from smart_app.cli.commands import main

    fhir = FhirClient(sekmet.base)
    patient = new_patient(fhir, "Import")
    start = entry_moment(40)
    rows = [
        "patient,performer,start,minutes,program,activity,note",
        f'{patient},{NURSE},{start.isoformat()},20,ccm,patient-call,"{GOOD_NOTE}"',
        f'{patient},{NURSE},{(start + timedelta(minutes=30)).isoformat()},15,rpm,data-review,"{GOOD_NOTE}"',
        f"{patient},{NURSE},{start.isoformat()},500,ccm,patient-call,x",
        f"{patient},{NURSE},not-a-time,5,ccm,patient-call,x",
    ]
    csv_file = tmp_path / "time.csv"
    csv_file.write_text("\n".join(rows) + "\n", encoding="utf-8")
    args = ["import-time", str(csv_file), "--fhir-base", sekmet.base, "--timezone", "UTC"]
    assert main(args) == 1
    out, err = capsys.readouterr()
    assert out.strip().splitlines()[-1] == "imported=2 duplicates=0 errors=2"
    assert "line 4:" in err and "line 5:" in err
    assert main(args) == 1
    out, _ = capsys.readouterr()
    assert out.strip().splitlines()[-1] == "imported=0 duplicates=2 errors=2"
    encounters = fhir.search("Encounter", {"patient": f"Patient/{patient}"})
    assert len(encounters) == 2
    for enc in encounters:
        FcEncounter(enc, strict=True)
    tasks = fhir.search("Task", {"patient": f"Patient/{patient}"})
    facts = read_facts([*encounters, *tasks], patient)
    assert sorted(e.minutes for e in facts.time_entries) == [15, 20]


def test_twenty_concurrent_users_through_the_app_every_entry_once(
    sekmet: SekmetServer, tmp_path: Path
) -> None:
    fhir = FhirClient(sekmet.base)
    patient = new_patient(fhir, "ConcurrentApp")
    app = support_app.make_app(tmp_path, TIMEZONE="UTC")
    from smart_app.web import security, sessions

    @app.get("/_test/start/<int:n>")
    def _start(n: int) -> str:
        sessions.start_session(
            LaunchContext(mode="open", fhir_base=sekmet.base, patient_id=patient, user=f"Practitioner/rn-{n}")
        )
        return security.csrf_token()

    start = entry_moment(50)
    ids: list[str] = []
    failures: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(20)

    def user(n: int) -> None:
        client = app.test_client()
        csrf = client.get(f"/_test/start/{n}").get_data(as_text=True)
        barrier.wait()
        for k in range(2):
            entry_id = new_entry_id()
            body = {
                "id": entry_id,
                "date": start.date().isoformat(),
                "start": (start + timedelta(minutes=10 * k)).strftime("%H:%M"),
                "minutes": "5",
                "note": GOOD_NOTE,
            }
            for _ in range(2):  # a double submit
                resp = post_json(client, csrf, "/time", body)
                if resp.status_code != 201:
                    with lock:
                        failures.append(f"{resp.status_code} {resp.get_json()}")
            with lock:
                ids.append(entry_id)

    threads = [threading.Thread(target=user, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert failures == []
    assert len(ids) == 40
    assert_exactly_once(fhir, patient, ids)
