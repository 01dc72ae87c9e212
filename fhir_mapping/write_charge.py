"""Strict writer for "mark as billed": one ChargeItem per CPT code of a patient-month, plus a Provenance.

Each ChargeItem carries our identifier `https://ccm-ready.org/fhir/identifier/charge` with the value
`<patient id>|<YYYY-MM>|<code>` and is created conditionally on it (`request.ifNoneExist`), so sending the
same patient-month twice stores each code once. Every resource is validated with fhir.resources R4B.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from fhir_mapping.codes import CPT
from fhir_mapping.write_provenance import WriteError, checked, instant, provenance, token_query

CHARGE_ID = "https://ccm-ready.org/fhir/identifier/charge"
_NS = uuid.UUID("9c1f0b7e-2a4d-4e8b-8f61-3b5e7d2c9a14")


def charge_value(patient_id: str, month: str, code: str) -> str:
    """Our identifier value for one code of one patient-month."""
    return f"{patient_id}|{month}|{code}"


def charge_item(
    *,
    patient_id: str,
    month: str,
    code: str,
    units: int,
    label: str,
    practitioner: str,
    start: datetime,
    end: datetime,
    entered: datetime,
    enterer: str | None = None,
) -> dict[str, Any]:
    """One billed CCM ChargeItem (status billed; occurrence = the month in the practice zone)."""
    if units < 1:
        raise WriteError("a ChargeItem needs at least one unit")
    if not practitioner.startswith(("Practitioner/", "PractitionerRole/")):
        raise WriteError("the billing practitioner must be a Practitioner or PractitionerRole reference")
    resource: dict[str, Any] = {
        "resourceType": "ChargeItem",
        "identifier": [{"system": CHARGE_ID, "value": charge_value(patient_id, month, code)}],
        "status": "billed",
        "code": {"coding": [{"system": CPT, "code": code, "display": label}], "text": label},
        "subject": {"reference": f"Patient/{patient_id}"},
        "occurrencePeriod": {"start": instant(start), "end": instant(end - timedelta(seconds=1))},
        "performer": [{"actor": {"reference": practitioner}}],
        "quantity": {"value": units},
        "enteredDate": instant(entered),
    }
    if enterer:
        resource["enterer"] = {"reference": enterer}
    return checked(resource)


def charge_transaction(
    *,
    patient_id: str,
    month: str,
    lines: Sequence[tuple[str, int, str]],
    practitioner: str,
    start: datetime,
    end: datetime,
    entered: datetime,
    user: str,
    pack_id: str,
    pack_version: str,
) -> dict[str, Any]:
    """A transaction Bundle: conditional creates of one ChargeItem per (code, units, label) + Provenance."""
    if not lines:
        raise WriteError("nothing to bill: no codes")
    entries: list[dict[str, Any]] = []
    urls: list[str] = []
    enterer = user if user.startswith(("Practitioner/", "PractitionerRole/")) else None
    for code, units, label in lines:
        value = charge_value(patient_id, month, code)
        url = f"urn:uuid:{uuid.uuid5(_NS, value)}"
        urls.append(url)
        entries.append(
            {
                "fullUrl": url,
                "resource": charge_item(
                    patient_id=patient_id,
                    month=month,
                    code=code,
                    units=units,
                    label=label,
                    practitioner=practitioner,
                    start=start,
                    end=end,
                    entered=entered,
                    enterer=enterer,
                ),
                "request": {
                    "method": "POST",
                    "url": "ChargeItem",
                    "ifNoneExist": token_query("identifier", CHARGE_ID, value),
                },
            }
        )
    prov = provenance(
        urls,
        user=user,
        recorded=entered,
        pack_id=pack_id,
        pack_version=pack_version,
        reason=f"CCM marked as billed for {month}",
    )
    entries.append(
        {
            "fullUrl": f"urn:uuid:{uuid.uuid4()}",
            "resource": prov,
            "request": {"method": "POST", "url": "Provenance"},
        }
    )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}
