"""Strict writer for the CCM initiating visit: a finished face-to-face Encounter + Provenance, idempotently.

cms-rules.md section 3.2: the initiating visit is a face-to-face E/M (levels 2-5, not 99211), an AWV
(G0438/G0439) or an IPPE (G0402), furnished by the billing practitioner, during which CCM was discussed
and documented. The Encounter carries the visit's CPT/HCPCS code in `type` (what the reader and the rules
look for), the practitioner as primary performer, the day as `period`, and says in `reasonCode` that CCM was
discussed. It carries our identifier `initiating-visit|<visit id>`; the transaction creates it conditionally
on that identifier and the patient, so sending it twice stores it once.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from fhir_mapping.codes import CPT, HCPCS, PPRF, V3_ACT_CODE, V3_PARTICIPATION_TYPE
from fhir_mapping.write_provenance import (
    WriteError,
    checked,
    created_once,
    provenance,
)
from fhir_mapping.write_time import transaction, urn
from rules.record_type import record

VISIT_ID = "https://ccm-ready.org/fhir/identifier/initiating-visit"
# The qualifying visits (cms-rules.md 3.2), in the order a form offers them: code -> (system, label).
VISIT_TYPES: dict[str, tuple[str, str]] = {
    "G0438": (HCPCS, "Annual wellness visit (AWV), initial"),
    "G0439": (HCPCS, "Annual wellness visit (AWV), subsequent"),
    "G0402": (HCPCS, "Welcome to Medicare visit (IPPE)"),
    **{f"9920{n}": (CPT, f"Office visit (E/M), new patient, level {n}") for n in range(2, 6)},
    **{f"9921{n}": (CPT, f"Office visit (E/M), established patient, level {n}") for n in range(2, 6)},
}
CCM_DISCUSSED = (
    "Chronic care management (CCM) discussed with the patient and documented (CCM initiating visit)"
)
PERSON_TYPES = ("Practitioner/", "PractitionerRole/")


@record
class VisitDraft:
    """A checked initiating visit ready to write."""

    visit_id: str
    patient_id: str
    practitioner: str  # "Practitioner/..." (the billing practitioner, who furnished the visit)
    day: date
    code: str  # a VISIT_TYPES key
    ccm_discussed: bool = True


def visit_to_json(draft: VisitDraft) -> dict[str, Any]:
    """A JSON-able copy (the ledger keeps the visit this way; `visit_from_json` reads it back)."""
    return {
        "visit_id": draft.visit_id,
        "patient_id": draft.patient_id,
        "practitioner": draft.practitioner,
        "day": draft.day.isoformat(),
        "code": draft.code,
        "ccm_discussed": draft.ccm_discussed,
    }


def visit_from_json(data: dict[str, Any]) -> VisitDraft:
    return VisitDraft(
        visit_id=str(data["visit_id"]),
        patient_id=str(data["patient_id"]),
        practitioner=str(data["practitioner"]),
        day=date.fromisoformat(str(data["day"])),
        code=str(data["code"]),
        ccm_discussed=bool(data.get("ccm_discussed", True)),
    )


def encounter(draft: VisitDraft) -> dict[str, Any]:
    """The finished, face-to-face (AMB) Encounter of the visit (validated as R4)."""
    if draft.code not in VISIT_TYPES:
        raise WriteError(f"{draft.code!r} is not a qualifying initiating visit (E/M 2-5, AWV or IPPE)")
    if not draft.patient_id:
        raise WriteError("an initiating visit needs the patient")
    if not draft.practitioner.startswith(PERSON_TYPES):
        raise WriteError("an initiating visit needs the practitioner who furnished it")
    if not draft.ccm_discussed:
        raise WriteError("a visit where CCM was not discussed is not an initiating visit")
    system, label = VISIT_TYPES[draft.code]
    resource = {
        "resourceType": "Encounter",
        "identifier": [{"system": VISIT_ID, "value": draft.visit_id}],
        "status": "finished",
        "class": {"system": V3_ACT_CODE, "code": "AMB", "display": "ambulatory"},
        "type": [{"coding": [{"system": system, "code": draft.code, "display": label}], "text": label}],
        "subject": {"reference": f"Patient/{draft.patient_id}"},
        "participant": [
            {
                "type": [{"coding": [{"system": V3_PARTICIPATION_TYPE, "code": PPRF}]}],
                "individual": {"reference": draft.practitioner},
            }
        ],
        "period": {"start": draft.day.isoformat(), "end": draft.day.isoformat()},
        "reasonCode": [{"text": CCM_DISCUSSED}],
    }
    return checked(resource)


def visit_transaction(
    draft: VisitDraft,
    *,
    user: str,
    recorded: datetime,
    pack_id: str,
    pack_version: str,
    verification: str | None = None,
) -> dict[str, Any]:
    """Encounter + Provenance in one transaction, both conditional on our visit identifier and the patient."""
    e_url, p_url = urn("visit", draft.visit_id), urn("visit-provenance", draft.visit_id)
    prov = provenance(
        [e_url],
        user=user,
        recorded=recorded,
        pack_id=pack_id,
        pack_version=pack_version,
        verification=verification,
    )
    return transaction(
        created_once(
            "Encounter", encounter(draft), e_url, prov, p_url, VISIT_ID, draft.visit_id, draft.patient_id
        )
    )
