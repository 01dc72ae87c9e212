"""Initiating visit: a face-to-face visit by the billing practitioner within 12 months before CCM starts."""

from __future__ import annotations

from datetime import datetime, timedelta

from rules import rule_ids
from rules.consent import given_from
from rules.month import one_year_before
from rules.patient_month import PatientMonth
from rules.records import ConsentRecord, VisitRecord
from rules.verdict import Finding

DONE = frozenset({"finished", "completed"})


def _qualifies(pm: PatientMonth, visit: VisitRecord) -> bool:
    policy = pm.pack.initiating_visit
    codes = policy.codes
    return (visit.status or "").lower() in DONE and any(
        c.code.strip().upper() in codes for c in visit.codings
    )


def _lookback(start: datetime, months: int) -> datetime:
    moment = start
    for _ in range(max(1, months // 12)):
        moment = one_year_before(moment)
    return moment


def check(pm: PatientMonth, consent: ConsentRecord | None) -> tuple[Finding, ...]:
    """Blocker unless a qualifying visit by the billing practitioner is within 12 months before CCM start."""
    policy = pm.pack.initiating_visit
    began = given_from(consent, pm.tz, counting=False) if consent else None
    ccm_start = began if began is not None else pm.end
    # The consent is often taken at the visit itself: allow the rest of the consent's day.
    local = ccm_start.astimezone(pm.tz)
    latest = datetime(local.year, local.month, local.day, tzinfo=pm.tz) + timedelta(days=1)
    earliest = _lookback(ccm_start, policy.lookback_months)
    visits = [v for v in pm.facts.visits if _qualifies(pm, v)]
    mine = [v for v in visits if any(pm.is_practitioner(p) for p in v.participants)]
    for v in mine:
        when = v.start or v.end
        if when is not None and earliest <= pm.aware(when) < latest:
            return ()
    anchor = "the CCM consent date" if began is not None else f"the end of {pm.month}"
    if mine:
        detail = "The billing practitioner's qualifying visits fall outside that window."
    elif visits:
        detail = "Qualifying visits exist, but not by the billing practitioner."
    else:
        detail = "No qualifying visit (E/M level 2-5, AWV or IPPE) is recorded."
    return (
        Finding(
            rule_ids.INITIATING_VISIT_MISSING,
            "initiating-visit",
            "blocker",
            "CCM must start with an initiating visit by the billing practitioner within "
            f"{policy.lookback_months} months before {anchor}. {detail} Schedule a face-to-face visit (E/M "
            "level 2-5, AWV or IPPE) and discuss CCM during it.",
            str(policy.citation),
            tuple(v.id for v in visits),
        ),
    )
