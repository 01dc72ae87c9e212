"""A source adding what the app captured itself: its clinical notes on the EHR and its ledger.

`CapturedSource(inner, ledger, fhir_base)` wraps any Source (a FHIR server, resources in hand): the verdict
then counts time and consent whichever write profile the EHR allows (structured, note or ledger only), each
entry once (deduplicated by our identifiers, see fhir_mapping.read_note). `verdict_for` stays the one entry
point; faces get the ledger with `ledger_of(app)` (the capture face registers it).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Protocol

from flask import Flask

from fhir_mapping.read_note import merge_captured
from rules.record_type import record
from smart_app.readiness.options import EvaluationOptions
from smart_app.readiness.use_case import Loaded, Source

LEDGER_EXT = "ccm_ready_ledger"


class CapturedRecord(Protocol):
    kind: str
    facts: dict[str, Any]


class CapturedLedger(Protocol):
    """What the readiness use case needs from the ledger (smart_app.capture.ledger.Ledger)."""

    def records(self, fhir_base: str | None = None, patient_id: str | None = None) -> list[Any]: ...


def ledger_of(app: Flask) -> CapturedLedger | None:
    return app.extensions.get(LEDGER_EXT)


Captured = list[tuple[str, dict[str, Any]]]


def _pairs(records: list[Any]) -> Captured:
    """(kind, facts) of captured entries, in ledger order. Delivery records are left out, and so is a consent
    stop the EHR applied as structured data (it changed the Consent on file, which the EHR's copy shows)."""
    on_ehr = {
        r.facts.get("of")
        for r in records
        if r.kind == "delivery" and r.facts.get("profile") == "structured" and r.facts.get("written")
    }
    return [
        (r.kind, r.facts)
        for r in records
        if r.kind != "delivery" and not (r.kind == "consent-stop" and r.id in on_ehr)
    ]


def captured_pairs(ledger: CapturedLedger | None, fhir_base: str, patient_id: str) -> Captured:
    """(kind, facts) of a patient's captured entries (see `_pairs`)."""
    if ledger is None:
        return []
    return _pairs(ledger.records(fhir_base, patient_id))


def captured_by_patient(ledger: CapturedLedger | None, fhir_base: str) -> dict[str, Captured]:
    """Every patient's captured entries on one server, by bare patient id (for the worklist)."""
    out: dict[str, Captured] = {}
    if ledger is None:
        return out
    base = fhir_base.rstrip("/")
    by_patient: dict[str, list[Any]] = {}
    for r in ledger.records():
        if r.fhir_base == base:
            by_patient.setdefault(r.patient_id, []).append(r)
    for patient, records in by_patient.items():
        out[patient] = _pairs(records)
    return out


@record
class CapturedSource:
    """`inner`'s resources plus our notes read back and the ledger's entries the EHR does not hold."""

    inner: Source
    ledger: CapturedLedger | None
    fhir_base: str

    def load(self, patient_id: str | None, options: EvaluationOptions) -> Loaded:
        loaded = self.inner.load(patient_id, options)
        bare = (patient_id or "").removeprefix("Patient/")
        pairs = captured_pairs(self.ledger, self.fhir_base, bare) if bare else []
        return replace(loaded, resources=merge_captured(loaded.resources, pairs))
