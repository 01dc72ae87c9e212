"""Same-month conflicts: services already billed for the patient, judged by the pack's concurrency table."""

from __future__ import annotations

from dataclasses import field

from rules.packs import Concurrency, Outcome
from rules.patient_month import PatientMonth
from rules.people import is_staff
from rules.record_type import record
from rules.records import BilledService
from rules.verdict import Finding

CCM_FAMILY = "ccm"
CHARGED = frozenset({"billable", "billed"})
RANK = {"blocker": 2, "warning": 1, "info": 0}
ALLOWED_WORDS = {
    "no": "It and CCM cannot both be billed for this month",
    "yes": "It is allowed in the same month as CCM",
    "once": "CCM is already billed for this month by the billing practitioner: do not bill it again",
    "unverified": "Whether this may run alongside CCM is not verified: do not bill until it is",
}


@record(frozen=False)
class _Hit:
    """Services that meet one row of the concurrency table."""

    entry: Concurrency
    outcome: Outcome
    relation: str
    codes: dict[str, None] = field(default_factory=dict)
    who: dict[str, None] = field(default_factory=dict)
    ids: dict[str, None] = field(default_factory=dict)


def in_month(pm: PatientMonth, b: BilledService) -> bool:
    """A service with a known date that meets the month (an undated one cannot be placed)."""
    start = b.start or b.end
    end = b.end or b.start
    return start is not None and pm.overlaps(start, end)


def billed_ccm(pm: PatientMonth) -> tuple[BilledService, ...]:
    """CCM-family services charged in the month by the billing practitioner (or by someone unrecorded,
    who cannot be shown to be anyone else)."""
    return tuple(
        b
        for b in pm.facts.billed
        if (b.status or "").lower() in CHARGED
        and in_month(pm, b)
        and (spec := pm.pack.find(b.code)) is not None
        and spec.family == CCM_FAMILY
        and _relation(pm, b) != "different"
    )


def _relation(pm: PatientMonth, b: BilledService) -> str:
    """same / different / unknown: who billed `b`, compared as one person whatever the reference form."""
    if pm.practitioner is None or not is_staff(b.performer):
        return "unknown"
    return "same" if pm.is_practitioner(b.performer) else "different"


def _outcome(entry: Concurrency, relation: str) -> Outcome:
    if relation == "same":
        return entry.same_practitioner
    if relation == "different":
        return entry.different_practitioner
    a, b = entry.same_practitioner, entry.different_practitioner
    return a if RANK[a.severity] >= RANK[b.severity] else b


def check(pm: PatientMonth) -> tuple[Finding, ...]:
    """One finding per conflict rule, driven by the pack's concurrency table (cms-rules.md §2)."""
    hits: dict[str, _Hit] = {}
    for b in pm.facts.billed:
        if (b.status or "").lower() not in CHARGED or not in_month(pm, b):
            continue
        spec = pm.pack.find(b.code)
        if spec is None:
            continue
        entry = pm.pack.concurrency_for(spec.family)
        if entry is None:
            continue
        relation = _relation(pm, b)
        outcome = _outcome(entry, relation)
        hit = hits.setdefault(outcome.rule, _Hit(entry, outcome, relation))
        if RANK[outcome.severity] > RANK[hit.outcome.severity]:
            hit.outcome, hit.relation = outcome, relation
        hit.codes[spec.code] = None
        hit.who[b.performer or "an unrecorded practitioner"] = None
        hit.ids[b.id] = None
    findings = []
    for rule, hit in hits.items():
        who = ", ".join(hit.who)
        relation = {
            "same": "the billing practitioner",
            "different": f"another practitioner ({who})",
            "unknown": f"{who} (the performer could not be matched to the billing practitioner, so the "
            "stricter rule applies; record who billed it)",
        }[hit.relation]
        findings.append(
            Finding(
                rule,
                "conflict",
                hit.outcome.severity,
                f"{hit.entry.label} ({', '.join(hit.codes)}) is billed for {pm.month} by {relation}. "
                f"{ALLOWED_WORDS[hit.outcome.allowed]}. {hit.entry.note}",
                str(hit.entry.citation),
                tuple(hit.ids),
            )
        )
    return tuple(findings)
