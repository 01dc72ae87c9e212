"""Strict writer for the CCM Consent (given, declined or stopped), with its Provenance, idempotently.

The shape is the one in docs/fhir-conventions.md ("CCM consent: Consent"). Scope is consentscope#treatment:
the CMS consent is agreement to a care-management service, which R4 defines as "Consent to participate in or
accept a treatment" (http://terminology.hl7.org/CodeSystem/consentscope); `patient-privacy` is for data-use
rules and would misclassify it. policyRule points at the CMS requirement (cms-rules.md section 3.3) via our
policy URL.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from fhir_mapping.codes import (
    CARE_PROGRAM,
    CCM_DISCLOSURE,
    DISCLOSURES,
    EXT_CCM_DISCLOSURE,
    EXT_CONSENT_METHOD,
    LOINC,
    LOINC_PATIENT_CONSENT,
    PPRF,
    V3_PARTICIPATION_TYPE,
)
from fhir_mapping.reading import as_object
from fhir_mapping.write_provenance import (
    WriteError,
    checked,
    created_once,
    instant,
    provenance,
)
from fhir_mapping.write_time import transaction, urn
from rules.record_type import record

CONSENT_ID = "https://ccm-ready.org/fhir/identifier/consent"
CONSENT_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
CONSENT_POLICY = "https://ccm-ready.org/fhir/policy/cms-ccm-consent"
DISCLOSURE_ORDER = ("ccm-available", "cost-sharing", "one-practitioner", "right-to-stop")
STATUS_FOR = {"given": "active", "declined": "rejected", "stopped": "inactive"}
METHODS = ("verbal", "written")


@record
class ConsentDraft:
    """A checked consent record ready to write."""

    consent_id: str
    patient_id: str
    decision: str  # given | declined | stopped
    obtained_at: datetime  # aware; when the patient agreed / declined / asked to stop
    obtained_by: str  # Practitioner/... who obtained it
    billing_practitioner: str  # Practitioner/... (PPRF)
    method: str  # verbal | written
    disclosures: tuple[str, ...] = DISCLOSURE_ORDER
    stop_date: date | None = None  # for "stopped": the last day; effective at the end of that month


def consent(draft: ConsentDraft) -> dict[str, Any]:
    """The Consent resource for `draft` (validated as R4)."""
    if draft.decision not in STATUS_FOR:
        raise WriteError(f"consent decision must be one of {', '.join(STATUS_FOR)}")
    if draft.method not in METHODS:
        raise WriteError("consent method must be verbal or written")
    unknown = set(draft.disclosures) - DISCLOSURES
    if unknown:
        raise WriteError(f"unknown disclosure codes: {', '.join(sorted(unknown))}")
    extensions: list[dict[str, Any]] = [{"url": EXT_CONSENT_METHOD, "valueCode": draft.method}]
    for code in DISCLOSURE_ORDER:
        if code in draft.disclosures:
            extensions.append(
                {"url": EXT_CCM_DISCLOSURE, "valueCoding": {"system": CCM_DISCLOSURE, "code": code}}
            )
    provision: dict[str, Any] = {
        "type": "deny" if draft.decision == "declined" else "permit",
        "actor": [
            {
                "role": {"coding": [{"system": V3_PARTICIPATION_TYPE, "code": PPRF}]},
                "reference": {"reference": draft.billing_practitioner},
            }
        ],
    }
    if draft.decision == "stopped":
        if draft.stop_date is None:
            raise WriteError("a stopped consent needs the stop date")
        provision["period"] = {"end": draft.stop_date.isoformat()}
    resource = {
        "resourceType": "Consent",
        "identifier": [{"system": CONSENT_ID, "value": draft.consent_id}],
        "status": STATUS_FOR[draft.decision],
        "extension": extensions,
        "scope": {"coding": [{"system": CONSENT_SCOPE, "code": "treatment"}]},
        "category": [
            {"coding": [{"system": LOINC, "code": LOINC_PATIENT_CONSENT}]},
            {"coding": [{"system": CARE_PROGRAM, "code": "ccm"}]},
        ],
        "patient": {"reference": f"Patient/{draft.patient_id}"},
        "dateTime": instant(draft.obtained_at),
        "performer": [{"reference": draft.obtained_by}],
        "policyRule": {
            "coding": [{"system": CONSENT_POLICY, "code": "ccm-consent"}],
            "text": "CMS CCM consent: inform the patient, document consent in the record",
        },
        "provision": provision,
    }
    return checked(resource)


def consent_transaction(
    draft: ConsentDraft,
    *,
    user: str,
    recorded: datetime,
    pack_id: str,
    pack_version: str,
    verification: str | None = None,
) -> dict[str, Any]:
    """Consent + Provenance in one transaction, both conditional on our consent identifier and the patient."""
    c_url, p_url = urn("consent", draft.consent_id), urn("consent-provenance", draft.consent_id)
    prov = provenance(
        [c_url],
        user=user,
        recorded=recorded,
        pack_id=pack_id,
        pack_version=pack_version,
        verification=verification,
    )
    return transaction(
        created_once(
            "Consent", consent(draft), c_url, prov, p_url, CONSENT_ID, draft.consent_id, draft.patient_id
        )
    )


def is_ccm_consent(resource: dict[str, Any]) -> bool:
    """A Consent whose category carries care-program `ccm` (the reader's test, for choosing what to stop)."""
    for cat in resource.get("category") or []:
        for coding in (cat.get("coding") or []) if isinstance(cat, dict) else []:
            if (
                isinstance(coding, dict)
                and coding.get("code") == "ccm"
                and str(coding.get("system", ""))
                .rstrip("/")
                .endswith("ccm-ready.org/fhir/CodeSystem/care-program")
            ):
                return True
    return False


def stopped(current: dict[str, Any], stop_date: date) -> dict[str, Any]:
    """A copy of the stored CCM Consent with status inactive and `provision.period.end` = the stop date.

    Everything else (when and by whom it was obtained, the disclosures, the billing practitioner) is kept, so
    minutes before the stop still count under the original consent.
    """
    res = {k: v for k, v in current.items()}
    res["status"] = "inactive"
    provision = dict(res.get("provision") or {"type": "permit"})
    period = dict(provision.get("period") or {})
    period["end"] = stop_date.isoformat()
    if "start" in period and period["start"] > period["end"]:
        raise WriteError("the stop date is before the consent's own start")
    provision["period"] = period
    res["provision"] = provision
    return checked(res)


def stop_transaction(
    base: str,
    current: dict[str, Any],
    stop_date: date,
    *,
    user: str,
    recorded: datetime,
    pack_id: str,
    pack_version: str,
    verification: str | None = None,
) -> dict[str, Any]:
    """PUT the stopped Consent (If-Match on the version read) and a Provenance saying why, atomically."""
    rid = current.get("id")
    if not isinstance(rid, str) or not rid:
        raise WriteError("the consent to stop has no server id")
    full = f"{base.rstrip('/')}/Consent/{rid}"
    request: dict[str, Any] = {"method": "PUT", "url": f"Consent/{rid}"}
    meta = as_object(current.get("meta"))
    if isinstance(meta.get("versionId"), str):
        request["ifMatch"] = f'W/"{meta["versionId"]}"'
    prov = provenance(
        [full],
        user=user,
        recorded=recorded,
        pack_id=pack_id,
        pack_version=pack_version,
        activity="UPDATE",
        reason=f"The patient stopped CCM on {stop_date.isoformat()}",
        verification=verification,
    )
    return transaction(
        [
            {"fullUrl": full, "resource": stopped(current, stop_date), "request": request},
            {
                "fullUrl": urn("consent-stop", f"{rid}:{stop_date.isoformat()}"),
                "resource": prov,
                "request": {"method": "POST", "url": "Provenance"},
            },
        ]
    )
