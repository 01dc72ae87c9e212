"""ChargeItem: a service already billed (or billable) for the patient."""

from __future__ import annotations

from typing import Any

from fhir_mapping.codes import CPT, HCPCS, codings
from fhir_mapping.dates import parse_when
from fhir_mapping.reading import ReadContext, Unreadable
from rules.records import BilledService


def read_charge_item(res: dict[str, Any], key: str, ctx: ReadContext) -> BilledService:
    status = res.get("status")
    if not isinstance(status, str) or not status:
        raise Unreadable("ChargeItem has no status")
    code = res.get("code")
    if not isinstance(code, dict):
        raise Unreadable("ChargeItem has no code")
    billing = next((c.code for c in codings(code) if c.system in (CPT, HCPCS)), None)
    if billing is None:
        raise Unreadable("ChargeItem.code has no CPT or HCPCS coding")
    when = res.get("occurrenceDateTime")
    if when is not None:
        start = parse_when(when, ctx.tz, field="ChargeItem.occurrenceDateTime")
        end = parse_when(when, ctx.tz, end=True, field="ChargeItem.occurrenceDateTime")
    else:
        period = res.get("occurrencePeriod") or {}
        if not isinstance(period, dict):
            raise Unreadable("ChargeItem.occurrencePeriod is not a Period")
        start = parse_when(period.get("start"), ctx.tz, field="ChargeItem.occurrencePeriod.start")
        end = parse_when(period.get("end"), ctx.tz, end=True, field="ChargeItem.occurrencePeriod.end")
    performer = None
    for p in res.get("performer") or ():
        performer = ctx.people.key(p.get("actor"), res)
        if performer:
            break
    quantity = res.get("quantity") or {}
    value = quantity.get("value") if isinstance(quantity, dict) else None
    units = int(value) if isinstance(value, int | float) and not isinstance(value, bool) and value >= 1 else 1
    return BilledService(
        id=key, code=billing, status=status, start=start, end=end, performer=performer, units=units,
    )
