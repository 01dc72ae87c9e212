"""A source adding what the app captured itself: its clinical notes on the EHR and its ledger.

`CapturedSource(inner, ledger, fhir_base)` wraps any Source (a FHIR server, resources in hand): the verdict
then counts time and consent whichever write profile the EHR allows (structured, note or ledger only), each
entry once (deduplicated by our identifiers, see fhir_mapping.read_note). `verdict_for` stays the one entry
point; faces get the ledger with `ledger_of(app)` (the capture face registers it).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Protocol

from flask import Flask

from fhir_mapping.read_note import merge_captured
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


def captured_pairs(ledger: CapturedLedger | None, fhir_base: str, patient_id: str) -> Captured:
    """(kind, facts) of a patient's captured entries in ledger order (delivery records left out)."""
    if ledger is None:
        return []
    return [(r.kind, r.facts) for r in ledger.records(fhir_base, patient_id) if r.kind != "delivery"]


def captured_by_patient(ledger: CapturedLedger | None, fhir_base: str) -> dict[str, Captured]:
    """Every patient's captured entries on one server, by bare patient id (for the worklist)."""
    out: dict[str, Captured] = {}
    if ledger is None:
        return out
    base = fhir_base.rstrip("/")
    for r in ledger.records():
        if r.fhir_base == base and r.kind != "delivery":
            out.setdefault(r.patient_id, []).append((r.kind, r.facts))
    return out


@dataclass(frozen=True)
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
