"""Billed-service evidence: ChargeItem, Claim, ExplanationOfBenefit and a finished care-management Encounter.

Status semantics (docs/fhir-conventions.md, "Billed services"): a ChargeItem counts when billable or
billed; a Claim or ExplanationOfBenefit when active (cancelled, draft, entered-in-error ignored; an EOB
whose outcome is `error` was never adjudicated); an Encounter when finished. Each CPT/HCPCS line becomes a
BilledService (status "billed", or the ChargeItem's own); the rules keep only the codes the pack knows.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from fhir_mapping.codes import CPT, HCPCS, codings
from fhir_mapping.dates import parse_when
from fhir_mapping.reading import ReadContext, Unreadable, as_object
from rules.packs import available, load_pack
from rules.records import BilledService


def _units(quantity: Any) -> int:
    value = quantity.get("value") if isinstance(quantity, dict) else None
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) and value >= 1 else 1


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
        if isinstance(when, str) and len(when) > 10:  # a dateTime: its end is the same instant
            end = start
        else:
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
    units = _units(res.get("quantity"))
    return BilledService(
        id=key, code=billing, status=status, start=start, end=end, performer=performer, units=units,
    )


CLAIM_IN_FORCE = frozenset({"active"})
NOT_BILLED_USES = frozenset({"preauthorization", "predetermination"})
BILLED = "billed"


def _billing_codes(concept: Any) -> list[str]:
    return list(dict.fromkeys(c.code.strip().upper() for c in codings(concept) if c.system in (CPT, HCPCS)))


def _care_team(res: dict[str, Any], ctx: ReadContext) -> dict[int, str]:
    team: dict[int, str] = {}
    for member in res.get("careTeam") or ():
        if isinstance(member, dict) and isinstance(member.get("sequence"), int):
            who = ctx.people.key(member.get("provider"), res)
            if who is not None:
                team[member["sequence"]] = who
    return team


def read_claim_lines(res: dict[str, Any], key: str, ctx: ReadContext) -> list[BilledService]:
    """One BilledService per CPT/HCPCS item of an active Claim or ExplanationOfBenefit; [] otherwise."""
    rtype = res.get("resourceType", "Claim")
    status = res.get("status")
    if not isinstance(status, str) or not status:
        raise Unreadable(f"{rtype} has no status")
    if status.lower() not in CLAIM_IN_FORCE or str(res.get("outcome") or "").lower() == "error":
        return []
    if str(res.get("use") or "claim").lower() in NOT_BILLED_USES:  # an estimate is not a bill
        return []
    team = _care_team(res, ctx)
    provider = ctx.people.key(res.get("provider"), res)
    billable = as_object(res.get("billablePeriod"))
    out: list[BilledService] = []
    for item in res.get("item") or ():
        if not isinstance(item, dict):
            continue
        codes = _billing_codes(item.get("productOrService"))
        if not codes:
            continue
        where = f"{rtype}.item.serviced"
        if item.get("servicedDate") is not None:
            start = parse_when(item["servicedDate"], ctx.tz, field=where)
            end = parse_when(item["servicedDate"], ctx.tz, end=True, field=where)
        else:
            period = as_object(item.get("servicedPeriod"), billable)
            start = parse_when(period.get("start"), ctx.tz, field=where)
            end = parse_when(period.get("end"), ctx.tz, end=True, field=where)
        seqs = item.get("careTeamSequence") or ()
        performer = next((team[s] for s in seqs if isinstance(s, int) and s in team), None)
        if performer is None and len(team) == 1:
            performer = next(iter(team.values()))
        units = _units(item.get("quantity"))
        who = performer or provider
        for code in codes:
            out.append(BilledService(key, code, BILLED, start, end, performer=who, units=units))
    return out


@cache
def care_management_codes() -> frozenset[str]:
    """Every code a policy pack knows (CCM, PCM, APCM, TCM, RPM, RTM, BHI, CPO, ESRD, G0506)."""
    return frozenset(code for pack_id in available() for code in load_pack(pack_id).codes)


def read_encounter_billing(
    res: dict[str, Any], key: str, ctx: ReadContext, performer: str | None
) -> list[BilledService]:
    """A finished Encounter whose type carries a care-management CPT/HCPCS code: evidence it was furnished."""
    if res.get("status") != "finished":
        return []
    known = care_management_codes()
    types = [c for t in res.get("type") or () if isinstance(t, dict) for c in t.get("coding") or ()]
    codes = [c for c in _billing_codes({"coding": types}) if c in known]
    if not codes:
        return []
    period = as_object(res.get("period"))
    start = parse_when(period.get("start"), ctx.tz, field="Encounter.period.start")
    end = parse_when(period.get("end") or period.get("start"), ctx.tz, end=True, field="Encounter.period.end")
    return [
        BilledService(id=key, code=code, status=BILLED, start=start, end=end, performer=performer)
        for code in codes
    ]
