"""Claim hand-off for ready patient-months: CSV for the billing team and draft FHIR Claims.

One claim per ready patient-month (one line per CPT code) with what the biller needs: patient and
Medicare id (MBI, from Patient.identifier when the EHR has it), date of service, place of service, CPT
codes and units, at least two chronic ICD-10-CM codes from the verdict's evidence, rendering and billing
practitioner with NPI, and the verdict id that justifies the claim.

Date of service convention (cms-rules.md §3.6 and §7 step 6 allow "the date the threshold was met, or
month end"): the **last day of the service month**. The verdict covers the whole month and add-on units
(99439, 99489, 99437) can still be earned until then; a claim for the current month must wait for it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Protocol

from fhir_mapping.write_claim import MBI, NPI, ClaimDraft, ClaimLine, claim_resource
from rules.month import Month
from smart_app.program.remittance_store import HandedOffClaim
from smart_app.program.worklist import WorklistRow, _cell

ICD10_SYSTEMS = ("http://hl7.org/fhir/sid/icd-10-cm", "http://hl7.org/fhir/sid/icd-10")
MAX_DIAGNOSES = 12  # 837P holds 12 diagnosis codes
DEFAULT_POS = "11"  # office: the billing location (cms-rules.md §1.1 [S19])
CSV_COLUMNS = (
    "claim_id",
    "patient",
    "patient_name",
    "medicare_id",
    "service_month",
    "date_of_service",
    "place_of_service",
    "line",
    "cpt",
    "units",
    "charge",
    "icd10_codes",
    "rendering_practitioner",
    "rendering_npi",
    "billing_provider",
    "billing_npi",
    "verdict_id",
    "problems",
)


class Directory(Protocol):
    """Where Medicare ids and NPIs come from (the FHIR server, or nothing)."""

    def medicare_id(self, patient: str) -> str: ...

    def npi(self, practitioner: str) -> str: ...


class NoDirectory:
    def medicare_id(self, patient: str) -> str:
        return ""

    def npi(self, practitioner: str) -> str:
        return ""


def identifier_of(resource: Mapping[str, Any], system: str) -> str:
    for ident in resource.get("identifier") or []:
        if isinstance(ident, dict) and ident.get("system") == system and ident.get("value"):
            return str(ident["value"])
    return ""


@dataclass
class FhirDirectory:
    """Reads Patient and Practitioner once each from a FhirClient-like object (`read(type, id)`)."""

    client: Any
    _cache: dict[str, str] = field(default_factory=dict)

    def _lookup(self, reference: str, system: str) -> str:
        if reference in self._cache:
            return self._cache[reference]
        rtype, _, rid = reference.partition("/")
        value = ""
        if rid:
            try:
                value = identifier_of(self.client.read(rtype, rid), system)
            except Exception:  # a missing or unreadable resource only leaves the id unknown
                value = ""
        self._cache[reference] = value
        return value

    def medicare_id(self, patient: str) -> str:
        return self._lookup(patient, MBI)

    def npi(self, practitioner: str) -> str:
        return self._lookup(practitioner, NPI) if practitioner.startswith("Practitioner/") else ""


@dataclass(frozen=True)
class Practice:
    """Claim settings of the practice (config keys CLAIMS_*)."""

    place_of_service: str = DEFAULT_POS
    billing_name: str = ""
    billing_npi: str = ""  # group NPI; "" = the rendering practitioner bills
    charges: Mapping[str, Decimal] = field(default_factory=dict)  # code -> charge; default: pack amount

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Practice:
        charges = {str(k): Decimal(str(v)) for k, v in (config.get("CLAIMS_CHARGES") or {}).items()}
        return cls(
            str(config.get("CLAIMS_PLACE_OF_SERVICE") or DEFAULT_POS),
            str(config.get("CLAIMS_BILLING_NAME") or ""),
            str(config.get("CLAIMS_BILLING_NPI") or ""),
            charges,
        )


def claim_id(patient: str, month: str) -> str:
    """Our claim id (837 CLM01, echoed in 835 CLP01): one CCM claim per patient-month, 17 characters."""
    digest = hashlib.sha256(f"{patient}|{month}".encode()).hexdigest()[:14].upper()
    return f"CCM{digest}"


def verdict_id(verdict: Mapping[str, Any]) -> str:
    """A content id of the verdict JSON (same verdict, same id): "v-" + 16 hex of its SHA-256."""
    data = json.dumps(verdict, sort_keys=True, separators=(",", ":"), default=str)
    return "v-" + hashlib.sha256(data.encode()).hexdigest()[:16]


def diagnoses(verdict: Mapping[str, Any]) -> tuple[str, ...]:
    """ICD-10-CM codes of the verdict's chronic conditions: one per distinct condition first, then others."""
    first: list[str] = []
    rest: list[str] = []
    seen_conditions: set[str] = set()
    for c in verdict.get("chronic_conditions") or []:
        if c.get("system") not in ICD10_SYSTEMS or not c.get("code"):
            continue
        code = _dotted(str(c["code"]))
        if code in first or code in rest:
            continue
        key = str(c.get("condition") or code)
        (rest if key in seen_conditions else first).append(code)
        seen_conditions.add(key)
    return tuple((first + rest)[:MAX_DIAGNOSES])


def _dotted(code: str) -> str:
    code = code.strip().upper().replace(".", "")
    return code if len(code) <= 3 else f"{code[:3]}.{code[3:]}"


def month_end(month: str) -> date:
    m = Month.parse(month)
    nxt = m.shift(1)
    return date.fromordinal(date(nxt.year, nxt.month, 1).toordinal() - 1)


def ready_items(rows: Iterable[WorklistRow]) -> list[tuple[str, Mapping[str, Any]]]:
    """(name, verdict JSON) of each worklist row (rows must keep their verdict)."""
    return [(r.name, r.verdict) for r in rows if r.verdict is not None]


def drafts(
    items: Iterable[tuple[str, Mapping[str, Any]]], directory: Directory, practice: Practice
) -> list[ClaimDraft]:
    """A claim draft for every ready verdict; `items` = (patient name, verdict JSON)."""
    out = []
    for name, v in items:
        codes = [(str(c["code"]), int(c.get("units") or 1)) for c in v.get("codes") or []]
        if v.get("status") != "ready" or not codes:
            continue
        patient, month = str(v["patient"]), str(v["month"])
        rendering = str(v.get("billing_practitioner") or "")
        each = {ln["code"]: ln.get("each") for ln in (v.get("payment") or {}).get("lines", [])}
        lines = tuple(
            ClaimLine(code, units, practice.charges.get(code) or Decimal(str(each.get(code) or "0")))
            for code, units in codes
        )
        rendering_npi = directory.npi(rendering) if rendering else ""
        out.append(
            ClaimDraft(
                claim_id=claim_id(patient, month),
                patient=patient,
                patient_name=name,
                medicare_id=directory.medicare_id(patient),
                month=month,
                date_of_service=month_end(month),
                place_of_service=practice.place_of_service,
                lines=lines,
                diagnoses=diagnoses(v),
                rendering=rendering,
                rendering_npi=rendering_npi,
                billing_name=practice.billing_name,
                billing_npi=practice.billing_npi or rendering_npi,
                verdict_id=verdict_id(v),
                verdict_status="ready",
            )
        )
    return sorted(out, key=lambda d: (d.patient_name.lower(), d.patient))


def to_csv(claims: Iterable[ClaimDraft]) -> str:
    """One CSV row per claim line."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for d in claims:
        for i, ln in enumerate(d.lines, start=1):
            writer.writerow(
                [
                    _cell(x)
                    for x in (
                        d.claim_id,
                        d.patient,
                        d.patient_name,
                        d.medicare_id,
                        d.month,
                        d.date_of_service.isoformat(),
                        d.place_of_service,
                        i,
                        ln.code,
                        ln.units,
                        f"{ln.charge * ln.units:.2f}",
                        ";".join(d.diagnoses),
                        d.rendering,
                        d.rendering_npi,
                        d.billing_name,
                        d.billing_npi,
                        d.verdict_id,
                        "; ".join(d.problems),
                    )
                ]
            )
    return out.getvalue()


def to_bundle(claims: Iterable[ClaimDraft], created: datetime) -> dict[str, Any]:
    """The draft Claims as a FHIR collection Bundle (each Claim validated as R4)."""
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": claim_resource(d, created)} for d in claims],
    }


def handed_off(claims: Iterable[ClaimDraft]) -> list[HandedOffClaim]:
    """What the store remembers of each hand-off (to match remittances and judge verdicts)."""
    return [
        HandedOffClaim(
            d.claim_id,
            d.patient,
            d.month,
            d.medicare_id,
            tuple((ln.code, ln.units) for ln in d.lines),
            d.total,
            d.verdict_id,
            d.verdict_status,
            d.rendering_npi,
            d.billing_npi,
        )
        for d in claims
    ]
