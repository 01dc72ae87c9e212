"""Write profiles against a real sekmet-fhir behind a small proxy that plays an EHR.

The proxy serves its own CapabilityStatement and refuses what it does not advertise (405 + OperationOutcome):
(a) accepts everything; (b) advertises and accepts only DocumentReference (plus reads and read batches);
(c) accepts nothing. In each, a care manager logs time and records consent through the app: the verdict counts
the minutes, nothing is lost (the ledger has every entry), and the panel and /session say where entries live.
A mid-session 405 on Encounter create moves to the note profile without losing the entry. Everything the EHR
stored is validated by the Medplum validator in one batch at the end of the module.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from fhir_mapping.write_consent import CONSENT_ID
from fhir_mapping.write_time import TIME_ENTRY_ID, new_entry_id
from smart_app.demo.local_fhir import SekmetServer, free_port
from smart_app.fhir.client import FhirClient
from tests.integration.test_writeback import DOCTOR, GOOD_NOTE, entry_moment, make_app, new_patient, post_json
from tests.support.medplum import medplum_errors

pytestmark = pytest.mark.integration

WRITE_TYPES = ("Encounter", "Task", "Provenance", "Consent", "DocumentReference")
READ_TYPES = (*WRITE_TYPES, "Patient", "Condition", "CarePlan", "Communication", "ChargeItem", "Goal")
OUTCOME = {
    "resourceType": "OperationOutcome",
    "issue": [{"severity": "error", "code": "not-supported", "diagnostics": "not accepted from apps"}],
}
WRITTEN: list[tuple[str, dict[str, Any]]] = []  # what the EHR stored, validated once at the end


class EhrProxy:
    """Plays an EHR in front of sekmet: `accepts` = the types it advertises and accepts for create."""

    def __init__(self, upstream: str, accepts: tuple[str, ...], transaction: bool) -> None:
        self.upstream = upstream.rstrip("/")
        self.accepts = set(accepts)
        self.advertised = set(accepts)
        self.transaction = transaction
        self.refused: list[str] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _refuse(self, what: str) -> None:
                proxy.refused.append(what)
                self._send(405, json.dumps(OUTCOME).encode(), "application/fhir+json")

            def _handle(self) -> None:
                path = self.path.removeprefix("/fhir")
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if self.command == "GET" and path.split("?")[0].strip("/") == "metadata":
                    self._send(200, json.dumps(proxy.capability()).encode(), "application/fhir+json")
                    return
                if self.command in ("POST", "PUT"):
                    target = path.split("?")[0].strip("/").split("/")[0]
                    if not target:  # a Bundle to the base: read batches pass, writes only if allowed
                        bundle = json.loads(body or b"{}")
                        types = {
                            (e.get("resource") or {}).get("resourceType") for e in bundle.get("entry") or []
                        } - {None}
                        if bundle.get("type") == "transaction" and (
                            not proxy.transaction or not types <= proxy.accepts
                        ):
                            self._refuse("transaction")
                            return
                    elif target not in proxy.accepts:
                        self._refuse(target)
                        return
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")
                }
                up = requests.request(
                    self.command, proxy.upstream + path, data=body, headers=headers, timeout=30
                )
                self._send(
                    up.status_code,
                    up.content,
                    up.headers.get("Content-Type", "application/fhir+json"),
                    up.headers.get("Location"),
                )

            def _send(self, status: int, body: bytes, ctype: str, location: str | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                if location:
                    self.send_header("Location", location.replace(proxy.upstream, proxy.base))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = _handle

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}/fhir"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def capability(self) -> dict[str, Any]:
        resources = []
        for rtype in READ_TYPES:
            codes = ["read", "search-type"] + (["create", "update"] if rtype in self.advertised else [])
            resources.append({"type": rtype, "interaction": [{"code": c} for c in codes]})
        rest: dict[str, Any] = {"mode": "server", "resource": resources, "interaction": [{"code": "batch"}]}
        if self.transaction:
            rest["interaction"].append({"code": "transaction"})
        return {
            "resourceType": "CapabilityStatement",
            "status": "active",
            "date": "2026-01-01",
            "kind": "instance",
            "fhirVersion": "4.0.1",
            "format": ["json"],
            "rest": [rest],
        }

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def ehr(request: pytest.FixtureRequest, sekmet: SekmetServer) -> Iterator[EhrProxy]:
    accepts, transaction = request.param
    proxy = EhrProxy(sekmet.base, accepts, transaction)
    try:
        yield proxy
    finally:
        proxy.close()


def log_time(client: FlaskClient, csrf: str, minutes: int, hours_ago: float) -> dict[str, Any]:
    start = entry_moment(hours_ago)
    body = {
        "date": start.date().isoformat(),
        "start": start.strftime("%H:%M"),
        "minutes": str(minutes),
        "program": "ccm",
        "activity": "patient-call",
        "note": GOOD_NOTE,
    }
    resp = post_json(client, csrf, "/time", body)
    assert resp.status_code == 201, resp.get_json()
    return {**resp.get_json(), "body": body}


def record_consent(client: FlaskClient, csrf: str) -> dict[str, Any]:
    first = datetime.now(UTC).date().replace(day=1)
    day = max(first - timedelta(days=1), datetime.now(UTC).date() - timedelta(days=1))
    body = {
        "consent_id": new_entry_id(),
        "decision": "given",
        "method": "verbal",
        "date": day.isoformat(),
        "billing_practitioner": DOCTOR,
        "disclosures": ["ccm-available", "cost-sharing", "one-practitioner", "right-to-stop"],
    }
    resp = post_json(client, csrf, "/consent", body)
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def verdict(client: FlaskClient) -> dict[str, Any]:
    resp = client.get("/panel.json")
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


def ledger_kinds(app: Flask, patient: str, base: str) -> list[str]:
    ledger = app.extensions["ccm_ready_ledger"]
    assert ledger.verify().ok
    return [r.kind for r in ledger.records(base, patient)]


def keep_written(fhir: FhirClient, patient: str) -> dict[str, list[dict[str, Any]]]:
    found = {}
    for rtype, param in (
        ("Encounter", "patient"),
        ("Task", "patient"),
        ("Consent", "patient"),
        ("DocumentReference", "patient"),
    ):
        found[rtype] = fhir.search(rtype, {param: f"Patient/{patient}"})
        WRITTEN.extend((f"{rtype}/{r['id']}", r) for r in found[rtype])
    for enc in found["Encounter"] + found["Consent"]:
        provs = fhir.search("Provenance", {"target": f"{enc['resourceType']}/{enc['id']}"})
        WRITTEN.extend((f"Provenance/{p['id']}", p) for p in provs)
    return found


PROFILE_CASES = [
    pytest.param((WRITE_TYPES, True), "structured", id="a-accepts-everything"),
    pytest.param((("DocumentReference",), False), "note", id="b-notes-only"),
    pytest.param(((), False), "none", id="c-accepts-nothing"),
]


@pytest.mark.parametrize(("ehr", "profile"), PROFILE_CASES, indirect=["ehr"])
def test_time_and_consent_counted_whatever_the_ehr_accepts(
    ehr: EhrProxy, profile: str, sekmet: SekmetServer, tmp_path: Path
) -> None:
    fhir = FhirClient(sekmet.base)
    patient = new_patient(fhir, f"Profile-{profile}")
    app, client, csrf = make_app(tmp_path, ehr.base, patient)

    consent = record_consent(client, csrf)
    entry = log_time(client, csrf, 25, 3)
    for answer in (consent, entry):
        assert answer["state"] == "saved" and answer["where"]["profile"] == profile, answer
    v = verdict(client)
    assert v["minutes"]["clinical_staff"] == 25
    assert not [f for f in v["findings"] if f["rule"] == "consent.missing"]

    # nothing lost: the ledger holds both entries and where they were written
    assert ledger_kinds(app, patient, ehr.base) == ["consent", "delivery", "time", "delivery"]
    stored = keep_written(fhir, patient)
    ours = [
        i["value"]
        for e in stored["Encounter"]
        for i in e.get("identifier", [])
        if i["system"] == TIME_ENTRY_ID
    ]
    notes = [i["value"] for d in stored["DocumentReference"] for i in d.get("identifier", [])]
    consents = [
        i["value"] for c in stored["Consent"] for i in c.get("identifier", []) if i["system"] == CONSENT_ID
    ]
    expected = {
        "structured": ([entry["id"]], [], [consent["id"]]),
        "note": ([], sorted([entry["id"], consent["id"]]), []),
        "none": ([], [], []),
    }[profile]
    assert (ours, sorted(notes), consents) == expected

    # the panel and /session say where entries live
    page = client.get("/panel").get_data(as_text=True)
    assert f'data-profile="{profile}"' in page and "Where entries live" in page
    session = client.get("/session").get_json()
    assert session["write_profiles"]["time"] == profile
    if profile == "none":
        assert "ledger only" in page
        summary = client.get("/ledger/summary").get_data(as_text=True)
        assert "Total minutes: 25" in summary and "ledger only" in summary
    assert ehr.refused == []  # the app never tried what the EHR does not advertise

    packet = client.get(f"/packet?format=json&month={v['month']}")  # the ledger extract travels with it
    assert packet.status_code == 200, packet.get_data(as_text=True)[:300]
    composition = json.loads(packet.get_data())["entry"][0]["resource"]
    assert any(e["url"].endswith("/ledger-extract") for e in composition["extension"])
    assert any("Ledger chain verified: 4 records" in sec["text"]["div"] for sec in composition["section"])

    if profile != "structured":  # an entry only the app holds is listed and corrected in the ledger
        ours = f"cr-{entry['id']}"
        assert ours in client.get("/time").get_data(as_text=True)
        fix = {**entry["body"], "reason": "minutes mistyped: 15 not 25", "minutes": "15"}
        fixed = post_json(client, csrf, f"/time/{ours}/correct", fix)
        assert fixed.status_code == 201 and fixed.get_json()["where"]["profile"] == "none", fixed.get_json()
        assert verdict(client)["minutes"]["clinical_staff"] == 15
        assert ledger_kinds(app, patient, ehr.base)[-2:] == ["correction", "delivery"]


@pytest.mark.parametrize("ehr", [(WRITE_TYPES, True)], indirect=True)
def test_a_405_on_encounter_mid_session_moves_to_notes_without_losing_the_entry(
    ehr: EhrProxy, sekmet: SekmetServer, tmp_path: Path
) -> None:
    fhir = FhirClient(sekmet.base)
    patient = new_patient(fhir, "Midsession")
    app, client, csrf = make_app(tmp_path, ehr.base, patient)
    record_consent(client, csrf)
    first = log_time(client, csrf, 25, 5)
    assert first["where"]["profile"] == "structured"

    ehr.accepts.discard("Encounter")  # still advertised: the refusal comes at run time
    second = log_time(client, csrf, 15, 3)
    assert second["state"] == "saved" and second["where"]["profile"] == "note"
    assert "refused Encounter" in second["message"] and "405" in second["message"]
    assert "Encounter" in ehr.refused

    v = verdict(client)
    assert v["minutes"]["clinical_staff"] == 40  # both entries count, once each
    stored = keep_written(fhir, patient)
    assert len(stored["Encounter"]) == 1 and len(stored["DocumentReference"]) == 1
    assert client.get("/session").get_json()["write_profiles"]["time"] == "note"  # remembered
    refused_before = len(ehr.refused)
    third = log_time(client, csrf, 10, 1)
    assert third["where"]["profile"] == "note" and len(ehr.refused) == refused_before  # no retry forever
    assert verdict(client)["minutes"]["clinical_staff"] == 50
    assert ledger_kinds(app, patient, ehr.base).count("time") == 3


def test_zz_medplum_finds_no_error_in_what_the_ehr_stored() -> None:
    """Runs last in this module: one Medplum batch over every resource the tests above stored."""
    if not WRITTEN:
        pytest.skip("run with the tests above")
    kinds = {name.split("/")[0] for name, _ in WRITTEN}
    assert {"Encounter", "Task", "Provenance", "Consent", "DocumentReference"} <= kinds
    errors = medplum_errors(dict(WRITTEN))
    assert {n: e for n, e in errors.items() if e} == {}
