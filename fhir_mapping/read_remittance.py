"""Lenient reader: FHIR R4 ExplanationOfBenefit / ClaimResponse -> rules.remittance records.

Per item: submitted = adjudication category `submitted`; paid = category `benefit` (else `paid`); patient
cost sharing = `copay` / `deductible` / `coinsurance` (PR); other adjudications with a CARC reason
(X12 claim-adjustment-reason code system) are CO adjustments; RARCs come from reason codings of the
remark code system. ClaimResponse items carry no code: it is taken from our claim (request identifier)
by item sequence when the caller knows the claim's codes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from fhir_mapping.write_claim import CLAIM_ID, MBI
from rules.remittance import DENIED_STATUS, Adjustment, ClaimPayment, RemitLine, Remittance

CARC_SYSTEMS = (
    "https://x12.org/codes/claim-adjustment-reason-codes",
    "http://x12.org/codes/claim-adjustment-reason-codes",
)
RARC_SYSTEMS = (
    "https://x12.org/codes/remittance-advice-remark-codes",
    "http://x12.org/codes/remittance-advice-remark-codes",
)
PATIENT_SHARE = {"copay": "3", "deductible": "1", "coinsurance": "2"}


class RemittanceResourceError(ValueError):
    """A FHIR resource that is not an EOB / ClaimResponse we can read (message names the element)."""


def _money(node: Any) -> Decimal:
    if not isinstance(node, dict):
        return Decimal(0)
    try:
        return Decimal(str(node.get("value", 0)))
    except InvalidOperation:
        raise RemittanceResourceError(f"amount {node.get('value')!r} is not a number") from None


def _codes(concept: Any) -> list[tuple[str, str]]:
    if not isinstance(concept, dict):
        return []
    return [
        (str(c.get("system", "")), str(c.get("code", "")))
        for c in concept.get("coding") or []
        if c.get("code")
    ]


def _date(text: Any) -> date | None:
    if not isinstance(text, str) or len(text) < 10:
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        return None


def _item(item: Mapping[str, Any], code: str, when: date | None) -> RemitLine:
    submitted = paid = Decimal(0)
    adjustments: list[Adjustment] = []
    remarks: list[str] = []
    for adj in item.get("adjudication") or []:
        cats = [c for _s, c in _codes(adj.get("category"))]
        amount = _money(adj.get("amount"))
        reasons = _codes(adj.get("reason"))
        remarks.extend(c for s, c in reasons if s in RARC_SYSTEMS)
        carcs = [c for s, c in reasons if s in CARC_SYSTEMS]
        if "submitted" in cats:
            submitted = amount
        elif "benefit" in cats or "paid" in cats:
            paid = amount
        elif any(c in PATIENT_SHARE for c in cats):
            cat = next(c for c in cats if c in PATIENT_SHARE)
            adjustments.append(Adjustment("PR", carcs[0] if carcs else PATIENT_SHARE[cat], amount))
        elif carcs:
            adjustments.append(Adjustment("CO", carcs[0], amount))
    units = item.get("quantity", {}).get("value", 1) if isinstance(item.get("quantity"), dict) else 1
    return RemitLine(code, submitted, paid, max(1, int(units or 1)), when, tuple(adjustments), tuple(remarks))


def read_remittance_resource(
    resource: Mapping[str, Any], claim_codes: Mapping[str, Sequence[str]] | None = None
) -> Remittance:
    """One EOB or ClaimResponse as a Remittance with one ClaimPayment."""
    rtype = resource.get("resourceType")
    if rtype not in ("ExplanationOfBenefit", "ClaimResponse"):
        raise RemittanceResourceError(
            f"resourceType {rtype!r}: expected ExplanationOfBenefit or ClaimResponse"
        )
    rid = str(resource.get("id") or "")
    claim_ref = resource.get("claim") if rtype == "ExplanationOfBenefit" else resource.get("request")
    claim_id = ""
    if isinstance(claim_ref, dict):
        ident = claim_ref.get("identifier") or {}
        claim_id = str(ident.get("value") or "") or str(claim_ref.get("reference") or "").rpartition("/")[2]
    if not claim_id:
        for ident in resource.get("identifier") or []:
            if ident.get("system") == CLAIM_ID:
                claim_id = str(ident.get("value") or "")
    if not claim_id:
        raise RemittanceResourceError(f"{rtype}/{rid}: no claim (claim/request identifier) to match")
    patient = resource.get("patient") or {}
    member = ""
    if isinstance(patient.get("identifier"), dict) and patient["identifier"].get("system") == MBI:
        member = str(patient["identifier"].get("value") or "")
    insurer = resource.get("insurer") or {}
    payer = str(insurer.get("display") or insurer.get("reference") or "")
    payer_id = str((insurer.get("identifier") or {}).get("value") or insurer.get("reference") or "")
    when = _date((resource.get("billablePeriod") or {}).get("start"))
    codes = list((claim_codes or {}).get(claim_id, ()))
    lines = []
    for n, item in enumerate(resource.get("item") or [], start=1):
        if not isinstance(item, dict):
            raise RemittanceResourceError(f"{rtype}/{rid}: item {n} is not an object")
        found = [c for _s, c in _codes(item.get("productOrService"))]
        seq = int(item.get("sequence") or item.get("itemSequence") or n)
        code = found[0] if found else (codes[seq - 1] if 0 < seq <= len(codes) else "")
        lines.append(_item(item, code, _date(item.get("servicedDate")) or when))
    outcome = resource.get("outcome")
    paid_total = _money((resource.get("payment") or {}).get("amount"))
    status = DENIED_STATUS if outcome == "error" else "1"
    payment = ClaimPayment(
        claim_id=claim_id,
        status=status,
        charge=sum((ln.charge for ln in lines), Decimal(0)),
        paid=sum((ln.paid for ln in lines), Decimal(0)),
        payer_claim_number=rid,
        member_id=member,
        period_start=when,
        lines=tuple(lines),
    )
    return Remittance(
        source="fhir-eob" if rtype == "ExplanationOfBenefit" else "fhir-claimresponse",
        payer=payer,
        payer_id=payer_id,
        trace=f"{rtype}/{rid}/{resource.get('meta', {}).get('versionId', '')}",
        paid_date=_date((resource.get("payment") or {}).get("date")) or _date(resource.get("created")),
        total_paid=paid_total or payment.paid,
        claims=(payment,),
    )


def remittance_resources(doc: Any) -> list[Mapping[str, Any]]:
    """The EOB / ClaimResponse resources of a JSON document (one resource or a Bundle)."""
    if not isinstance(doc, dict):
        raise RemittanceResourceError("not a FHIR JSON object")
    if doc.get("resourceType") == "Bundle":
        out = [e.get("resource") for e in doc.get("entry") or [] if isinstance(e, dict)]
        found: list[Mapping[str, Any]] = [
            r
            for r in out
            if isinstance(r, dict) and r.get("resourceType") in ("ExplanationOfBenefit", "ClaimResponse")
        ]
        if not found:
            raise RemittanceResourceError("Bundle without ExplanationOfBenefit or ClaimResponse entries")
        return found
    return [doc]
