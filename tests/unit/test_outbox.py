"""The durable outbox (stored before sending, saved only on success, retried with backoff, durable across
restarts, leases) and the timelog endpoints through Flask, with a hand-written in-memory FHIR server."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from fhir_mapping.write_time import TIME_ENTRY_ID, TimeEntryDraft, entry_transaction, new_entry_id
from smart_app.capture.outbox import Outbox, OutboxWorker, conditional_creates
from smart_app.context import LaunchContext
from smart_app.fhir.client import FhirError, FhirUnauthorized, FhirUnavailable
from tests.support import app as support_app

BASE = "http://fhir.test/fhir"
NURSE = "Practitioner/rn1"
NOTE = "Reviewed glucose log (diabetes); moved metformin to evening; recheck fasting values Friday."


class FakeServer:
    """Stores what it is sent; honours ifNoneExist on identifier / target; can fail on demand."""

    def __init__(self) -> None:
        self.resources: list[dict[str, Any]] = []
        self.failures: list[Exception] = []
        self.refuse_transactions = False
        self.base = BASE
        self.calls = 0
        self.on_call: Callable[[], None] | None = None

    def _fail(self) -> None:
        self.calls += 1
        if self.on_call:
            self.on_call()
        if self.failures:
            raise self.failures.pop(0)

    def _match(self, rtype: str, condition: str | None) -> dict[str, Any] | None:
        if not condition:
            return None
        condition, _, patient_part = condition.partition("&")  # identifier first, then the patient
        patient = patient_part.partition("=")[2].replace("%2F", "/")
        found = self._match_one(rtype, condition)
        if found is not None and patient and not self._of_patient(found, patient):
            return None
        return found

    def _of_patient(self, res: dict[str, Any], patient: str) -> bool:
        for key in ("subject", "for", "patient"):
            if isinstance(res.get(key), dict):
                return bool(res[key].get("reference") == patient)
        for t in res.get("target", []):  # a Provenance: the patient of its first target
            ref = self._get(t["reference"])
            return ref is not None and self._of_patient(ref, patient)
        return True

    def _match_one(self, rtype: str, condition: str) -> dict[str, Any] | None:
        key, _, value = condition.partition("=")
        value = value.replace("%7C", "|")
        for res in self.resources:
            if res["resourceType"] != rtype:
                continue
            if key == "identifier" and any(
                f"{i['system']}|{i['value']}" == value for i in res.get("identifier", [])
            ):
                return res
            if key == "target" and any(t["reference"] == value for t in res.get("target", [])):
                return res
            if key.startswith("target:"):
                target_type = key.split(":", 1)[1].split(".", 1)[0]
                for t in res.get("target", []):
                    ref = self._get(t["reference"])
                    if (
                        ref
                        and ref["resourceType"] == target_type
                        and self._match_one(target_type, f"identifier={value}")
                    ):
                        return res
        return None

    def _get(self, ref: str) -> dict[str, Any] | None:
        rtype, _, rid = ref.partition("/")
        return next((r for r in self.resources if r["resourceType"] == rtype and r["id"] == rid), None)

    def _store(self, resource: dict[str, Any]) -> dict[str, Any]:
        res = {**resource, "id": uuid.uuid4().hex[:12]}
        self.resources.append(res)
        return res

    def transaction(self, bundle: dict[str, Any]) -> dict[str, Any]:
        self._fail()
        if self.refuse_transactions:
            raise FhirError(405, "HTTP 405 from FHIR server: method not allowed")
        ids: dict[str, str] = {}
        out = []
        for entry in bundle["entry"]:
            res = entry["resource"]
            existing = self._match(res["resourceType"], entry["request"].get("ifNoneExist"))
            if existing is None:
                existing = self._store(res)
                status = "201 Created"
            else:
                status = "200 OK"
            ids[entry["fullUrl"]] = f"{existing['resourceType']}/{existing['id']}"
            out.append(
                {"response": {"status": status, "location": f"{BASE}/{ids[entry['fullUrl']]}/_history/1"}}
            )
        for res in self.resources:  # resolve urn references, as a server does
            for key in ("encounter",):
                if isinstance(res.get(key), dict) and res[key]["reference"] in ids:
                    res[key] = {"reference": ids[res[key]["reference"]]}
            if "target" in res:
                res["target"] = [
                    {"reference": ids.get(t["reference"], t["reference"])} for t in res["target"]
                ]
        return {"resourceType": "Bundle", "type": "transaction-response", "entry": out}

    def create(self, resource: dict[str, Any], if_none_exist: str | None = None) -> dict[str, Any]:
        self._fail()
        return self._match(resource["resourceType"], if_none_exist) or self._store(resource)

    def search(self, resource_type: str, params: Any = None, **_: Any) -> list[dict[str, Any]]:
        self._fail()
        return [r for r in self.resources if r["resourceType"] == resource_type]

    def read(self, resource_type: str, resource_id: str) -> dict[str, Any]:
        self._fail()
        found = self._get(f"{resource_type}/{resource_id}")
        if found is None:
            from smart_app.fhir.client import FhirNotFound

            raise FhirNotFound(404, "not found")
        return found

    def of(self, rtype: str) -> list[dict[str, Any]]:
        return [r for r in self.resources if r["resourceType"] == rtype]


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def draft(start: datetime | None = None, entry_id: str | None = None) -> TimeEntryDraft:
    return TimeEntryDraft(
        entry_id or new_entry_id(),
        "p1",
        NURSE,
        start or datetime(2026, 11, 3, 14, tzinfo=UTC),
        25,
        "ccm",
        "patient-call",
        NOTE,
    )


def queue(outbox: Outbox, d: TimeEntryDraft) -> str:
    bundle = entry_transaction(
        d, user=NURSE, recorded=datetime(2026, 11, 3, 15, tzinfo=UTC), pack_id="p", pack_version="v"
    )
    outbox.add(
        d.entry_id,
        "time",
        fhir_base=BASE,
        patient_id="p1",
        payload={"bundle": bundle},
        summary={"performer": NURSE},
    )
    return d.entry_id


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def outbox(tmp_path: Path, clock: Clock) -> Outbox:
    return Outbox(tmp_path / "outbox.sqlite3", backoff=2.0, max_backoff=60.0, clock=clock)


def test_item_is_stored_before_the_first_attempt_and_saved_only_after_success(outbox: Outbox) -> None:
    server = FakeServer()
    item_id = queue(outbox, draft())
    states: list[str] = []
    server.on_call = lambda: states.append(outbox.get(item_id).label)  # type: ignore[union-attr]
    after = outbox.send(item_id, server)
    assert states == ["pending"]  # the server was called while the item was durably stored and not saved
    assert after is not None and after.state == "saved"
    assert [r.split("/")[0] for r in after.result] == ["Encounter", "Task", "Provenance"]
    assert len(server.of("Encounter")) == 1


@pytest.mark.parametrize(
    "failure",
    [
        FhirUnavailable(None, "FHIR server could not connect"),
        FhirUnavailable(503, "HTTP 503"),
        FhirUnauthorized(401, "token expired"),
        FhirError(412, "version conflict"),
        RuntimeError("surprise"),
    ],
)
def test_transient_failures_keep_the_item_pending_with_backoff(
    outbox: Outbox, clock: Clock, failure: Exception
) -> None:
    server = FakeServer()
    server.failures = [failure, failure]
    item_id = queue(outbox, draft())
    first = outbox.send(item_id, server)
    assert first is not None and first.state == "pending" and first.attempts == 1 and first.last_error
    assert outbox.due() == []  # not before the backoff
    clock.now += 2.5
    assert [i.id for i in outbox.due()] == [item_id]
    second = outbox.send(item_id, server)
    assert second is not None and second.attempts == 2
    assert second.next_attempt - clock.now > 3  # doubled
    clock.now += 10
    assert outbox.send(item_id, server).state == "saved"  # type: ignore[union-attr]
    assert len(server.of("Encounter")) == 1


def test_refused_content_is_rejected_kept_and_can_be_queued_again(outbox: Outbox) -> None:
    server = FakeServer()
    server.failures = [FhirError(422, "HTTP 422 from FHIR server: Encounter.subject: bad")]
    item_id = queue(outbox, draft())
    after = outbox.send(item_id, server)
    assert after is not None and after.state == "rejected" and "subject" in after.last_error
    assert outbox.due() == []
    assert outbox.requeue(item_id)
    assert outbox.send(item_id, server).state == "saved"  # type: ignore[union-attr]


def test_repeats_never_duplicate(outbox: Outbox) -> None:
    server = FakeServer()
    d = draft()
    queue(outbox, d)
    queue(outbox, d)  # a double submit keeps the first
    assert outbox.counts() == {"pending": 1}
    outbox.send(d.entry_id, server)
    assert outbox.send(d.entry_id, server).state == "saved"  # type: ignore[union-attr]
    # The answer was lost after the server committed: sending the same bundle again writes nothing new.
    server.transaction(outbox.get(d.entry_id).payload["bundle"])  # type: ignore[union-attr]
    assert [len(server.of(t)) for t in ("Encounter", "Task", "Provenance")] == [1, 1, 1]


def test_lease_keeps_two_senders_apart_until_it_expires(outbox: Outbox, clock: Clock) -> None:
    item_id = queue(outbox, draft())
    assert outbox.claim(item_id) is not None
    assert outbox.claim(item_id) is None
    assert outbox.due() == []
    clock.now += outbox.lease + 1  # the first sender died
    assert [i.id for i in outbox.due()] == [item_id]
    assert outbox.claim(item_id) is not None


def test_pending_items_survive_a_restart_and_the_worker_sends_them(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "outbox.sqlite3"
    first = Outbox(path, clock=clock)
    server = FakeServer()
    server.failures = [FhirUnavailable(None, "down")]
    ids = [queue(first, draft(datetime(2026, 11, 3, 10 + i, tzinfo=UTC))) for i in range(3)]
    first.send(ids[0], server)
    first.close()
    reopened = Outbox(path, clock=clock)  # the app restarted
    assert {i.id for i in reopened.for_patient(BASE, "p1")} == set(ids)
    clock.now += 10
    worker = OutboxWorker(reopened, lambda item: server)
    assert worker.run_once() == 3
    assert reopened.counts() == {"saved": 3}
    assert len(server.of("Encounter")) == 3


def test_worker_waits_for_a_session_when_it_has_no_client(outbox: Outbox, clock: Clock) -> None:
    item_id = queue(outbox, draft())
    worker = OutboxWorker(outbox, lambda item: None, wait_for_session=30)
    assert worker.run_once() == 0
    item = outbox.get(item_id)
    assert item is not None and item.state == "pending" and item.attempts == 0
    assert "session" in item.last_error
    server = FakeServer()
    worker.remember(item_id, server)  # a request brought a client (with the session's token)
    clock.now += 31
    assert worker.run_once() == 1


def test_conditional_creates_when_transactions_are_refused(outbox: Outbox) -> None:
    server = FakeServer()
    server.refuse_transactions = True
    d = draft()
    item_id = queue(outbox, d)
    assert outbox.send(item_id, server).state == "saved"  # type: ignore[union-attr]
    (enc,) = server.of("Encounter")
    (task,) = server.of("Task")
    (prov,) = server.of("Provenance")
    assert task["encounter"] == {"reference": f"Encounter/{enc['id']}"}
    assert prov["target"][0] == {"reference": f"Encounter/{enc['id']}"}
    conditional_creates(server, outbox.get(item_id).payload["bundle"])  # type: ignore[union-attr]
    assert [len(server.of(t)) for t in ("Encounter", "Task", "Provenance")] == [1, 1, 1]


# ------------------------------------------------------------------------------------ through the app


def app_with(
    tmp_path: Path,
    server: FakeServer,
    scopes: frozenset[str] | None = None,
    user: str | None = NURSE,
    patient: str = "p1",
) -> tuple[Flask, FlaskClient, str]:
    app = support_app.make_app(tmp_path, fhir=server, TIMEZONE="UTC")
    mode = "open" if scopes is None else "ehr"
    ctx = LaunchContext(
        mode=mode,
        fhir_base=BASE,
        patient_id=patient,
        user=user,  # type: ignore[arg-type]
        granted_scopes=scopes or frozenset(),
    )
    client, csrf = support_app.launched(app, ctx)
    return app, client, csrf


def recent() -> dict[str, str]:
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=90)
    return {
        "date": start.date().isoformat(),
        "start": start.strftime("%H:%M"),
        "minutes": "20",
        "program": "ccm",
        "activity": "patient-call",
        "note": NOTE,
    }


def post(client: FlaskClient, csrf: str, url: str, body: dict[str, Any]) -> Any:
    return client.post(url, json=body, headers={"X-CSRF-Token": csrf})


def test_post_time_saved_when_the_server_accepts(tmp_path: Path) -> None:
    server = FakeServer()
    _, client, csrf = app_with(tmp_path, server)
    resp = post(client, csrf, "/time", recent())
    assert resp.status_code == 201
    body = resp.get_json()
    assert body["state"] == "saved" and body["message"].startswith("Saved")
    (enc,) = server.of("Encounter")
    assert enc["participant"][0]["individual"]["reference"] == NURSE  # the current fhirUser
    assert enc["identifier"][0] == {"system": TIME_ENTRY_ID, "value": body["id"]}


def test_post_time_pending_when_the_server_is_down_and_listed(tmp_path: Path) -> None:
    server = FakeServer()
    server.failures = [
        FhirUnavailable(None, "overlap search down"),
        FhirUnavailable(None, "could not connect"),
    ]
    _, client, csrf = app_with(tmp_path, server)
    resp = post(client, csrf, "/time", recent())
    assert resp.status_code == 202
    body = resp.get_json()
    assert body["state"] == "pending" and "Saved" not in body["message"]
    assert any(w["code"] == "overlap-unchecked" for w in body["warnings"])
    listing = client.get("/time/pending").get_json()
    assert listing["counts"]["pending"] == 1
    assert listing["items"][0]["id"] == body["id"]
    page = client.get("/time/new").get_data(as_text=True)
    assert "Not yet on the FHIR server" in page and "pending" in page


def test_post_time_errors_are_clear(tmp_path: Path) -> None:
    _, client, csrf = app_with(tmp_path, FakeServer())
    resp = post(client, csrf, "/time", {**recent(), "minutes": "500", "note": ""})
    assert resp.status_code == 422
    codes = {e["code"] for e in resp.get_json()["errors"]}
    assert codes == {"minutes-range", "note-missing"}
    bad = post(client, csrf, "/time", {**recent(), "start": "25:99", "minutes": "ten"})
    assert {e["code"] for e in bad.get_json()["errors"]} >= {"start-unreadable", "minutes-unreadable"}


def test_form_post_and_csrf(tmp_path: Path) -> None:
    server = FakeServer()
    _, client, csrf = app_with(tmp_path, server)
    assert client.post("/time", data=recent()).status_code == 400  # no CSRF token
    resp = client.post("/time", data={**recent(), "csrf_token": csrf})
    assert resp.status_code == 201
    assert "Saved on the FHIR server" in resp.get_data(as_text=True)


def test_without_write_scopes_entries_live_in_the_ledger_only(tmp_path: Path) -> None:
    """Write profile *none* (no write scope granted): recorded in the ledger, nothing sent to the EHR."""
    server = FakeServer()
    _, client, csrf = app_with(tmp_path, server, scopes=frozenset({"patient/*.rs"}))
    resp = post(client, csrf, "/time", recent())
    body = resp.get_json()
    assert resp.status_code == 201 and body["where"]["profile"] == "none"
    assert "ledger" in body["message"]
    assert server.resources == []
    assert post(client, csrf, "/consent", {"decision": "given"}).status_code == 422  # validated as usual
    writable = frozenset({"user/Encounter.c", "user/Task.c", "user/Provenance.c"})
    _, client2, csrf2 = app_with(tmp_path / "w", FakeServer(), scopes=writable)
    answer = post(client2, csrf2, "/time", recent())
    assert answer.status_code == 201 and answer.get_json()["where"]["profile"] == "structured"


def test_open_mode_without_a_user_asks_who_did_the_work(tmp_path: Path) -> None:
    server = FakeServer()
    _, client, csrf = app_with(tmp_path, server, user=None)
    resp = post(client, csrf, "/time", recent())
    assert resp.status_code == 422 and resp.get_json()["errors"][0]["code"] == "performer-missing"
    assert post(client, csrf, "/time", {**recent(), "performer": "Practitioner/rn9"}).status_code == 201


def test_note_check_while_typing(tmp_path: Path) -> None:
    _, client, csrf = app_with(tmp_path, FakeServer())
    vague = post(client, csrf, "/time/note-check", {"note": "followed up"}).get_json()
    assert vague["vague"] and "problem addressed" in vague["message"]
    assert not post(client, csrf, "/time/note-check", {"note": NOTE}).get_json()["vague"]


def test_consent_form_and_post(tmp_path: Path) -> None:
    server = FakeServer()
    server.resources.append(
        {"resourceType": "Patient", "id": "p1", "generalPractitioner": [{"reference": "Practitioner/dr"}]}
    )
    _, client, csrf = app_with(tmp_path, server)
    page = client.get("/consent/new").get_data(as_text=True)
    assert "Practitioner/dr" in page and "one practitioner" in page.lower()
    body = {
        "decision": "given",
        "method": "written",
        "date": datetime.now(UTC).date().isoformat(),
        "billing_practitioner": "Practitioner/dr",
        "consent_id": str(uuid.uuid4()),
        "disclosures": ["ccm-available", "cost-sharing", "one-practitioner", "right-to-stop"],
    }
    assert post(client, csrf, "/consent", body).status_code == 201
    assert post(client, csrf, "/consent", body).status_code == 201
    (consent,) = server.of("Consent")
    assert consent["status"] == "active" and consent["performer"] == [{"reference": NURSE}]
    bad = post(
        client, csrf, "/consent", {**body, "consent_id": str(uuid.uuid4()), "disclosures": ["cost-sharing"]}
    )
    assert bad.status_code == 422 and "disclosure" in bad.get_json()["errors"][0]["code"]


def test_correction_through_the_app(tmp_path: Path) -> None:
    server = FakeServer()
    _, client, csrf = app_with(tmp_path, server)
    first = post(client, csrf, "/time", recent()).get_json()
    assert first["state"] == "saved"
    (enc,) = server.of("Encounter")
    assert post(client, csrf, f"/time/{enc['id']}/correct", {}).status_code == 422  # reason required
    assert "entered in error" in client.get(f"/time/{enc['id']}/correct").get_data(as_text=True)


def test_the_panel_shows_the_capture_form_and_pending_entries(tmp_path: Path) -> None:
    from tests.unit.test_panel import MONTH, make_app, open_session, scenario

    down = FhirUnavailable(None, "FHIR server could not connect")
    app = make_app(tmp_path, scenario("ready"), write_error=down, OUTBOX_WORKER=False)
    client = app.test_client()
    open_session(client, "p-ready")
    page = client.get("/panel", query_string={"month": MONTH}).get_data(as_text=True)
    assert 'id="timelog-form"' in page and "Record consent" in page
    assert 'name="conditions" value="Condition/' in page  # conditions addressed come from the verdict
    assert "Not yet on the FHIR server" not in page or 'id="timelog-outbox" hidden' in page
    with client.session_transaction() as sess:
        csrf = str(sess["csrf"])
    # The fake server is down for writes: the write fails, so the entry stays pending.
    resp = post(client, csrf, "/time", {**recent(), "performer": NURSE})
    assert resp.status_code == 202 and resp.get_json()["state"] == "pending"
    page = client.get("/panel", query_string={"month": MONTH}).get_data(as_text=True)
    assert 'id="timelog-outbox" hidden' not in page
    assert "pending" in page and "20 min CCM" in page


def test_a_rejected_entry_is_shown_and_can_be_sent_again(tmp_path: Path) -> None:
    server = FakeServer()
    server.failures = [FhirError(422, "HTTP 422 from FHIR server: Encounter.subject: unknown patient")]
    _, client, csrf = app_with(tmp_path, server)
    body = recent()
    # The first call is the overlap search: let it pass, fail the write.
    server.failures.insert(0, FhirUnavailable(None, "search down"))
    resp = post(client, csrf, "/time", body)
    assert resp.status_code == 422 and resp.get_json()["state"] == "rejected"
    item_id = resp.get_json()["id"]
    page = client.get("/time/new").get_data(as_text=True)
    assert "unknown patient" in page and f"/time/{item_id}/retry" in page
    again = client.post(
        f"/time/{item_id}/retry", data={"csrf_token": csrf}, headers={"Accept": "application/json"}
    )
    assert again.status_code == 201 and again.get_json()["state"] == "saved"
    assert len(server.of("Encounter")) == 1


def test_an_entry_id_of_another_patient_is_neither_shown_nor_reused(tmp_path: Path) -> None:
    server = FakeServer()
    _, first, csrf1 = app_with(tmp_path, server)
    entry_id = post(first, csrf1, "/time", recent()).get_json()["id"]
    _, other, csrf2 = app_with(tmp_path, server, patient="p2")  # same outbox database
    resp = post(other, csrf2, "/time", {**recent(), "id": entry_id})
    assert resp.status_code == 422
    assert [e["code"] for e in resp.get_json()["errors"]] == ["id-taken"]
    assert other.get("/time/pending").get_json()["items"] == []
    assert other.post(f"/time/{entry_id}/retry", data={"csrf_token": csrf2}).status_code == 404


def test_the_background_worker_thread_resumes_pending_items(tmp_path: Path) -> None:
    import time

    outbox = Outbox(tmp_path / "outbox.sqlite3", backoff=0.01, max_backoff=0.05)
    server = FakeServer()
    server.failures = [FhirUnavailable(None, "down")]
    item_id = queue(outbox, draft())
    worker = OutboxWorker(outbox, lambda item: server, interval=0.05)
    worker.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and outbox.get(item_id).state != "saved":  # type: ignore[union-attr]
            time.sleep(0.02)
    finally:
        worker.stop()
    assert outbox.get(item_id).state == "saved"  # type: ignore[union-attr]
    assert server.calls == 2


def test_a_stop_without_a_consent_on_file_records_an_inactive_consent_once(tmp_path: Path) -> None:
    server = FakeServer()
    _, client, csrf = app_with(tmp_path, server)
    today = datetime.now(UTC).date().isoformat()
    body = {
        "decision": "stopped",
        "method": "verbal",
        "date": today,
        "billing_practitioner": "Practitioner/dr",
    }
    assert post(client, csrf, "/consent", {**body, "consent_id": str(uuid.uuid4())}).status_code == 201
    assert post(client, csrf, "/consent", {**body, "consent_id": str(uuid.uuid4())}).status_code == 201
    (consent,) = server.of("Consent")
    assert consent["status"] == "inactive" and consent["provision"]["period"]["end"] == today


def test_each_patient_has_its_own_timer(tmp_path: Path) -> None:
    import re

    keys = []
    for patient in ("p1", "p2"):
        _, client, _ = app_with(tmp_path / patient, FakeServer(), patient=patient)
        page = client.get("/time/new").get_data(as_text=True)
        keys.append(re.search(r'data-timer-key="([0-9a-f]+)"', page).group(1))  # type: ignore[union-attr]
    assert keys[0] != keys[1]
    assert "p1" not in keys[0]


def test_saved_items_are_forgotten_after_a_while_pending_ones_never(outbox: Outbox, clock: Clock) -> None:
    server = FakeServer()
    saved = queue(outbox, draft())
    outbox.send(saved, server)
    pending = queue(outbox, draft())
    clock.now += 8 * 86400
    assert outbox.purge_saved(7 * 86400) == 1
    assert outbox.get(saved) is None and outbox.get(pending) is not None


def test_many_outboxes_opening_one_new_file_at_once(tmp_path: Path) -> None:
    """Like several app processes starting together: none fails with 'database is locked'."""
    import threading

    path = tmp_path / "shared" / "outbox.sqlite3"
    barrier = threading.Barrier(16)
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            barrier.wait(timeout=30)
            Outbox(path).counts()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert oct(path.stat().st_mode & 0o777) == "0o600"
