"""CCM Consent as a ConsentRecord (see docs/fhir-conventions.md, "Consent")."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fhir_mapping.codes import (
    CARE_PROGRAM,
    CCM_DISCLOSURE,
    EXT_CCM_DISCLOSURE,
    EXT_CONSENT_METHOD,
    PPRF,
    V3_PARTICIPATION_TYPE,
    canonical_system,
    codes_in,
)
from fhir_mapping.dates import is_date_only, parse_when
from fhir_mapping.reading import ReadContext, Unreadable
from rules.records import ConsentRecord


def care_programs(res: dict[str, Any]) -> tuple[str, ...]:
    """Care programs a Consent is about (category care-program#...); () for unrelated consents."""
    category = res.get("category")
    if not category:
        return ()
    return tuple(dict.fromkeys(codes_in(category, CARE_PROGRAM)))


def read_consent(res: dict[str, Any], key: str, ctx: ReadContext, programs: tuple[str, ...]) -> ConsentRecord:
    status = res.get("status")
    if not isinstance(status, str) or not status:
        raise Unreadable("Consent has no status")
    provision = res.get("provision") or {}
    if not isinstance(provision, dict):
        raise Unreadable("Consent.provision is not an object")
    billing = None
    for actor in provision.get("actor") or ():
        if isinstance(actor, dict) and PPRF in codes_in(actor.get("role"), V3_PARTICIPATION_TYPE):
            billing = ctx.people.key(actor.get("reference"), res)
            if billing:
                break
    performers = res.get("performer") or ()
    obtained_by = ctx.people.key(performers[0], res) if performers else None
    period = provision.get("period") or {}
    if not isinstance(period, dict):
        raise Unreadable("Consent.provision.period is not a Period")
    ptype = provision.get("type")
    method = None
    disclosures: set[str] = set()
    for ext in res.get("extension") or ():
        url = ext.get("url")
        if url == EXT_CCM_DISCLOSURE:
            coding = ext.get("valueCoding") or {}
            if canonical_system(coding.get("system")) == CCM_DISCLOSURE and coding.get("code"):
                disclosures.add(coding["code"])
        elif url == EXT_CONSENT_METHOD:
            code = ext.get("valueCode")
            if isinstance(code, str) and code:
                method = code.strip().lower()
    return ConsentRecord(
        id=key,
        status=status,
        programs=programs,
        obtained_at=parse_when(res.get("dateTime"), ctx.tz, field="Consent.dateTime"),
        billing_practitioner=billing,
        obtained_by=obtained_by,
        stop_date=parse_when(period.get("end"), ctx.tz, field="Consent.provision.period.end"),
        period_end=parse_when(period.get("end"), ctx.tz, end=True, field="Consent.provision.period.end"),
        period_start=parse_when(period.get("start"), ctx.tz, field="Consent.provision.period.start"),
        provision_type=ptype.strip().lower() if isinstance(ptype, str) and ptype.strip() else None,
        method=method,
        disclosures=frozenset(disclosures),
        given_by=_given_by(res.get("dateTime"), period.get("start"), ctx),
    )


def _given_by(date_time: Any, start: Any, ctx: ReadContext) -> datetime | None:
    """The end of the day (month, year) named by a consent date given without a time of day."""
    ends = [
        parse_when(value, ctx.tz, end=True, field=field)
        for value, field in ((date_time, "Consent.dateTime"), (start, "Consent.provision.period.start"))
        if value and is_date_only(value)
    ]
    return max((e for e in ends if e is not None), default=None)
