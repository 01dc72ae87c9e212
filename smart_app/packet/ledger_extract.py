"""The ledger extract in the audit packet: the patient's captured records with their chain hashes.

The packet carries (1) a Composition section "Ledger" listing each record (sequence, kind, when, who, hash)
and the result of checking the WHOLE chain, naming any record that fails, and (2) a Composition extension
with the extract as JSON (every record of the patient with `prev_hash` and `hash`, and the chain head), so
an auditor can recompute the hashes (see smart_app.capture.ledger.record_hash).
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass, field
from typing import Any

from fhir_mapping.packet_narrative import SECTION_SYSTEM, _div, table

LEDGER_EXT = "https://ccm-ready.org/fhir/StructureDefinition/ledger-extract"


@dataclass(frozen=True)
class LedgerExtract:
    records: list[dict[str, Any]]
    chain_ok: bool
    count: int
    head: str
    broken: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "chain": {"ok": self.chain_ok, "records": self.count, "head": self.head, "broken": self.broken},
            "records": self.records,
        }

    @property
    def status_text(self) -> str:
        if self.chain_ok:
            return f"Ledger chain verified: {self.count} records, head {self.head[:16]}."
        named = "; ".join(f"record #{b['seq']} ({b['id']}): {b['reason']}" for b in self.broken)
        return f"Ledger chain BROKEN: {named}."


def extract(ledger: Any, fhir_base: str, patient_id: str) -> LedgerExtract:
    """The patient's records and the result of checking the whole chain (`ledger`: capture.ledger.Ledger)."""
    check = ledger.verify()
    records = [r.to_json() for r in ledger.records(fhir_base, patient_id)]
    broken = [{"seq": b.seq, "id": b.id, "reason": b.reason} for b in check.broken]
    return LedgerExtract(records, check.ok, check.count, check.head, broken)


def section(ext: LedgerExtract) -> dict[str, Any]:
    rows = [
        [str(r["seq"]), r["kind"], r["recorded"], r.get("user") or "", r["id"], r["hash"]]
        for r in ext.records
    ]
    inner = f"<p>{html.escape(ext.status_text)}</p>" + table(
        ["#", "Kind", "Recorded (UTC)", "Who", "Record id", "SHA-256 (chained)"],
        rows,
        "The app's ledger holds no record for this patient.",
    )
    return {
        "title": "Ledger: what the app captured (hash-chained)",
        "code": {"coding": [{"system": SECTION_SYSTEM, "code": "ledger"}]},
        "text": _div(inner),
        "emptyReason": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/list-empty-reason", "code": "nilknown"}
            ]
        },
    }


def extension(ext: LedgerExtract) -> dict[str, Any]:
    data = json.dumps(ext.to_json(), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return {
        "url": LEDGER_EXT,
        "valueAttachment": {
            "contentType": "application/json",
            "data": base64.b64encode(data).decode("ascii"),
            "title": "Ledger extract with chain hashes",
        },
    }
