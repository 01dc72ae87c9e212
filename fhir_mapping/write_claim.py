"""Strict writer: a claim hand-off (one patient-month) as a FHIR R4 `Claim` with status draft.

For EHRs and clearinghouses that take FHIR claims. Validated with fhir.resources (R4B models, as every
writer here). Identifiers: our claim id (`CLAIM_ID`, the 837 CLM01 / 835 CLP01 value) and the verdict id
that justifies the claim (`VERDICT_ID`). Practitioners are referenced by NPI (identifier references) and,
when known, by their FHIR id.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from fhir_mapping.codes import CPT
from fhir_mapping.write_provenance import WriteError, checked, instant
from rules.record_type import record

CLAIM_ID = "https://ccm-ready.org/fhir/identifier/claim"
VERDICT_ID = "https://ccm-ready.org/fhir/identifier/verdict"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
NPI = "http://hl7.org/fhir/sid/us-npi"
MBI = "http://hl7.org/fhir/sid/us-mbi"
POS = "https://www.cms.gov/Medicare/Coding/place-of-service-codes/Place_of_Service_Code_Set"
CLAIM_TYPE = "http://terminology.hl7.org/CodeSystem/claim-type"
PROCESS_PRIORITY = "http://terminology.hl7.org/CodeSystem/processpriority"
CARE_TEAM_ROLE = "http://terminology.hl7.org/CodeSystem/claimcareteamrole"


@record
class ClaimLine:
    code: str
    units: int
    charge: Decimal  # per unit


@record
class ClaimDraft:
    """Everything a biller needs for one CCM patient-month claim."""

    claim_id: str
    patient: str  # "Patient/ID"
    patient_name: str
    medicare_id: str  # MBI, "" when unknown
    month: str
    date_of_service: date
    place_of_service: str
    lines: tuple[ClaimLine, ...]
    diagnoses: tuple[str, ...]  # ICD-10-CM, dotted, chronic conditions from the verdict's evidence
    rendering: str  # "Practitioner/ID" or ""
    rendering_npi: str
    billing_name: str
    billing_npi: str
    verdict_id: str
    verdict_status: str

    @property
    def total(self) -> Decimal:
        return sum((ln.charge * ln.units for ln in self.lines), Decimal(0))

    @property
    def problems(self) -> tuple[str, ...]:
        """What would make a payer reject the claim as handed off (shown to the biller)."""
        out = []
        if not self.medicare_id:
            out.append("no Medicare id (MBI) on the patient")
        if len(self.diagnoses) < 2:
            out.append("fewer than 2 chronic ICD-10-CM codes")
        if not self.rendering_npi:
            out.append("no rendering NPI")
        if not self.billing_npi:
            out.append("no billing NPI")
        return tuple(out)


def _practitioner(reference: str, npi: str, name: str = "") -> dict[str, Any]:
    ref: dict[str, Any] = {}
    if reference:
        ref["reference"] = reference
    if npi:
        ref["identifier"] = {"system": NPI, "value": npi}
    if name:
        ref["display"] = name
    if not ref:
        raise WriteError("a claim needs a billing provider (reference or NPI)")
    return ref


def claim_resource(draft: ClaimDraft, created: datetime) -> dict[str, Any]:
    """The draft FHIR Claim of one hand-off (validated R4; WriteError when it cannot be)."""
    if not draft.lines:
        raise WriteError("a claim needs at least one line")
    patient_id = draft.patient.removeprefix("Patient/")
    coverage: dict[str, Any] = {"display": "Medicare Part B"}
    if draft.medicare_id:
        coverage["identifier"] = {"system": MBI, "value": draft.medicare_id}
    dx_seq = list(range(1, len(draft.diagnoses) + 1))[:4]
    resource: dict[str, Any] = {
        "resourceType": "Claim",
        "identifier": [
            {"system": CLAIM_ID, "value": draft.claim_id},
            {"system": VERDICT_ID, "value": draft.verdict_id},
        ],
        "status": "draft",
        "type": {"coding": [{"system": CLAIM_TYPE, "code": "professional"}]},
        "use": "claim",
        "patient": {"reference": f"Patient/{patient_id}"},
        "billablePeriod": {"start": f"{draft.month}-01", "end": draft.date_of_service.isoformat()},
        "created": instant(created),
        "provider": _practitioner("", draft.billing_npi or draft.rendering_npi, draft.billing_name)
        if (draft.billing_npi or draft.rendering_npi)
        else _practitioner(draft.rendering, ""),
        "priority": {"coding": [{"system": PROCESS_PRIORITY, "code": "normal"}]},
        "insurance": [{"sequence": 1, "focal": True, "coverage": coverage}],
        "total": {"value": float(draft.total), "currency": "USD"},
    }
    if draft.rendering or draft.rendering_npi:
        resource["careTeam"] = [
            {
                "sequence": 1,
                "provider": _practitioner(draft.rendering, draft.rendering_npi),
                "role": {"coding": [{"system": CARE_TEAM_ROLE, "code": "primary"}]},
            }
        ]
    if draft.diagnoses:
        resource["diagnosis"] = [
            {"sequence": i, "diagnosisCodeableConcept": {"coding": [{"system": ICD10CM, "code": code}]}}
            for i, code in enumerate(draft.diagnoses, start=1)
        ]
    items = []
    for i, ln in enumerate(draft.lines, start=1):
        item: dict[str, Any] = {
            "sequence": i,
            "productOrService": {"coding": [{"system": CPT, "code": ln.code}]},
            "servicedDate": draft.date_of_service.isoformat(),
            "locationCodeableConcept": {"coding": [{"system": POS, "code": draft.place_of_service}]},
            "quantity": {"value": ln.units},
            "unitPrice": {"value": float(ln.charge), "currency": "USD"},
            "net": {"value": float(ln.charge * ln.units), "currency": "USD"},
        }
        if draft.rendering or draft.rendering_npi:
            item["careTeamSequence"] = [1]
        if dx_seq:
            item["diagnosisSequence"] = dx_seq
        items.append(item)
    resource["item"] = items
    return checked(resource)
