"""Use case: mark a patient-month as billed (one ChargeItem per code + Provenance), idempotently.

1. Read the patient's ChargeItems. A CCM-family one (99490, 99439, 99491, 99437, 99487, 99489;
   billable/billed) in the month that we did not write for this patient-month -> refuse (only one
   practitioner may bill CCM a month, and never twice). Ours already there -> nothing to do (a retry).
2. Evaluate the month afresh (the single-patient path); only a `ready` verdict can be billed.
3. POST one transaction of conditional creates (our identifier per code) and a Provenance.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import current_app, has_app_context

from fhir_mapping.reader import read_facts
from fhir_mapping.write_charge import CHARGE_ID, charge_transaction
from fhir_mapping.write_provenance import provenance
from rules.month import Month, zone
from rules.packs import resolve_pack
from rules.verdict import Verdict
from smart_app.program.worklist import BILLED_STATUSES, CCM_FAMILY
from smart_app.readiness.captured import CapturedSource, ledger_of
from smart_app.readiness.fetch import ReadinessClient
from smart_app.readiness.options import EvaluationOptions
from smart_app.readiness.use_case import ServerSource, verdict_for


class BillingRefused(Exception):
    """The month cannot be marked as billed (already billed by someone, or not ready)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason  # already-billed | not-ready | no-practitioner


@dataclass(frozen=True)
class MarkResult:
    patient: str
    month: str
    created: bool  # False: our ChargeItems were already there (a retry)
    charge_items: tuple[str, ...]  # "ChargeItem/ID"
    codes: tuple[tuple[str, int], ...]


def _existing_ccm(
    client: ReadinessClient, patient_id: str, m: Month, tz: str, pack: Any
) -> tuple[list[tuple[str, str, int]], list[tuple[str, str, str | None]]]:
    """(ours: [(ref, code, units)], others: [(ref, code, performer)]) CCM ChargeItems in the month."""
    start, end = m.bounds(zone(tz))
    mine_prefix = f"{patient_id}|{m}|"
    ours: list[tuple[str, str, int]] = []
    others: list[tuple[str, str, str | None]] = []
    for res in client.search("ChargeItem", [("patient", patient_id), ("_count", "200")]):
        if not isinstance(res, dict) or res.get("resourceType") != "ChargeItem":
            continue
        facts = read_facts([res], patient_id, tz)
        for item in facts.billed:
            spec = pack.find(item.code)
            if spec is None or spec.family != CCM_FAMILY or item.status not in BILLED_STATUSES:
                continue
            if item.start is None or not (start <= item.start < end):
                continue
            mine = any(
                isinstance(i, dict)
                and i.get("system") == CHARGE_ID
                and str(i.get("value", "")).startswith(mine_prefix)
                for i in res.get("identifier") or ()
            )
            if mine:
                ours.append((item.id, item.code, item.units))
            else:
                others.append((item.id, item.code, item.performer))
    return ours, others


def mark_billed(
    client: Any,
    patient_id: str,
    month: Month | str,
    *,
    tz: str = "UTC",
    policy: str | None = None,
    billing_practitioner: str | None = None,
    user: str | None = None,
    now: datetime | None = None,
) -> MarkResult:
    """Write the month's CCM ChargeItems (once); BillingRefused when it must not be billed."""
    m = month if isinstance(month, Month) else Month.parse(month)
    tzinfo = zone(tz)
    pack = resolve_pack(policy, m)
    ours, others = _existing_ccm(client, patient_id, m, tz, pack)
    if others:
        codes = ", ".join(sorted({code for _ref, code, _who in others}))
        raise BillingRefused(
            f"CCM is already billed for this patient in {m} ({codes}); only one "
            "practitioner may bill CCM a month, and only once.",
            "already-billed",
        )
    if ours:
        return MarkResult(
            f"Patient/{patient_id}",
            str(m),
            False,
            tuple(r for r, _c, _u in ours),
            tuple((c, u) for _r, c, u in ours),
        )
    options = EvaluationOptions(m, tz, pack.id, billing_practitioner)
    source = CapturedSource(ServerSource(client), _ledger(), str(getattr(client, "base", "")))
    verdict: Verdict = verdict_for(source, patient_id, options).verdict
    if verdict.status != "ready" or not verdict.codes:
        raise BillingRefused(f"This month is not ready to bill (status: {verdict.status}).", "not-ready")
    practitioner = verdict.billing_practitioner
    if not practitioner:
        raise BillingRefused("No billing practitioner is known for this patient.", "no-practitioner")
    start, end = m.bounds(tzinfo)
    bundle = charge_transaction(
        patient_id=patient_id,
        month=str(m),
        lines=[(c.code, c.units, c.label or c.code) for c in verdict.codes],
        practitioner=practitioner,
        start=start,
        end=end,
        entered=(now or datetime.now(UTC)).replace(microsecond=0),
        user=user or practitioner,
        pack_id=pack.id,
        pack_version=pack.version,
    )
    response = client.transaction(bundle)
    refs: list[str] = []
    for entry in response.get("entry", [])[: len(verdict.codes)]:
        location = (entry.get("response") or {}).get("location", "")
        if "ChargeItem/" in location:
            refs.append("ChargeItem/" + location.split("ChargeItem/", 1)[1].split("/", 1)[0])
    return MarkResult(
        f"Patient/{patient_id}", str(m), True, tuple(refs), tuple((c.code, c.units) for c in verdict.codes)
    )


@dataclass(frozen=True)
class UndoResult:
    patient: str
    month: str
    charge_items: tuple[str, ...]  # set to entered-in-error
    codes: tuple[tuple[str, int], ...]


def undo_billed(
    client: Any,
    patient_id: str,
    month: Month | str,
    *,
    tz: str = "UTC",
    policy: str | None = None,
    user: str | None = None,
    now: datetime | None = None,
) -> UndoResult:
    """Withdraw our "marked as billed" for a patient-month: each of our ChargeItems becomes
    `entered-in-error` (its identifier retired so the month can be marked again) with one Provenance."""
    m = month if isinstance(month, Month) else Month.parse(month)
    pack = resolve_pack(policy, m)
    ours, _others = _existing_ccm(client, patient_id, m, tz, pack)
    if not ours:
        raise BillingRefused(f"Nothing marked as billed by this app for {m}; nothing to undo.", "not-billed")
    entered = (now or datetime.now(UTC)).replace(microsecond=0)
    entries: list[dict[str, Any]] = []
    refs: list[str] = []
    for ref, _code, _units in ours:
        rid = ref.split("/", 1)[1]
        res = dict(client.read("ChargeItem", rid))
        res["status"] = "entered-in-error"
        res["identifier"] = [
            {**i, "value": f"{i.get('value')}|withdrawn-{entered.strftime('%Y%m%dT%H%M%SZ')}"}
            if isinstance(i, dict) and i.get("system") == CHARGE_ID else i
            for i in res.get("identifier") or ()
        ]
        refs.append(f"ChargeItem/{rid}")
        entries.append({"resource": res, "request": {"method": "PUT", "url": f"ChargeItem/{rid}"}})
    prov = provenance(
        refs,
        user=user or "Organization/ccm-ready",
        recorded=entered,
        pack_id=pack.id,
        pack_version=pack.version,
        activity="UPDATE",
        reason=f"CCM 'marked as billed' for {m} withdrawn (entered in error)",
    )
    entries.append({"resource": prov, "request": {"method": "POST", "url": "Provenance"}})
    client.transaction({"resourceType": "Bundle", "type": "transaction", "entry": entries})
    return UndoResult(f"Patient/{patient_id}", str(m), tuple(refs), tuple((c, u) for _r, c, u in ours))


def _ledger() -> Any:
    """The app's ledger when running inside the app (its entries count like the panel counts them)."""
    return ledger_of(current_app) if has_app_context() else None
