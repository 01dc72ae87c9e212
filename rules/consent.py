"""CCM consent: given once, before CCM starts, naming the billing practitioner; a stop ends with its month."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo

from rules import rule_ids
from rules.month import Month
from rules.packs import Citation
from rules.patient_month import PatientMonth
from rules.records import ConsentRecord, PatientFacts
from rules.verdict import ConsentStateName, Finding

# The four things CMS requires the patient to be told (cms-rules.md §3.3).
DISCLOSURES: frozenset[str] = frozenset(
    {"ccm-available", "cost-sharing", "one-practitioner", "right-to-stop"}
)
DISCLOSURE_WORDS = {
    "ccm-available": "that CCM is available",
    "cost-sharing": "that cost sharing applies",
    "one-practitioner": "that only one practitioner can bill CCM per month",
    "right-to-stop": "that the patient may stop at any time (effective at the end of the month)",
}
RECORDED = frozenset({"active", "rejected", "inactive"})

CITE_CONSENT = Citation(
    "CMS MLN909188; Noridian CCM Q&A; CY2017 PFS final rule", "3.3", ("S1", "S3", "S12", "S29"), "H"
)
CITE_RECONSENT = Citation("Noridian CCM Q&A (Q3)", "3.3, 0", ("S3",), "H")
CITE_PRACTITIONER = Citation("CMS MLN909188; CMS CCM FAQ", "3.3, 5.3", ("S1", "S2"), "H")


@dataclass(frozen=True, slots=True)
class ConsentState:
    findings: tuple[Finding, ...]
    consent: ConsentRecord | None  # the consent that governs the month for the billing practitioner
    # Minutes before this instant are not counted. Without a consent that covers the billing
    # practitioner (missing, declined, another practitioner's) it is the month's end: nothing counts.
    counts_from: datetime | None
    counts_until: (
        datetime | None
    )  # minutes at or after this instant are not counted (effective end of a stop)


def state_of(findings: tuple[Finding, ...]) -> ConsentStateName:
    """The month's consent state, read from the consent findings (a stop within the month is still given)."""
    rules = {f.rule for f in findings if f.severity == "blocker"}
    if rule_ids.CONSENT_DECLINED in rules:
        return "declined"
    if rule_ids.CONSENT_STOPPED in rules:
        return "stopped"
    return "missing" if rules & rule_ids.NO_CONSENT else "given"


def _aware(moment: datetime, tz: tzinfo) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=tz)


def ccm_consents(facts: PatientFacts) -> tuple[ConsentRecord, ...]:
    """Recorded CCM consents (given, declined or stopped); drafts and errors are ignored."""
    return tuple(c for c in facts.consents if "ccm" in c.programs and (c.status or "").lower() in RECORDED)


def _latest(consents: list[ConsentRecord], tz: tzinfo) -> ConsentRecord:
    """The most recently obtained consent (undated ones sort first; ties keep record order)."""
    indexed = list(enumerate(consents))
    indexed.sort(
        key=lambda ic: (
            ic[1].obtained_at is not None,
            _aware(ic[1].obtained_at, tz) if ic[1].obtained_at else datetime.min,
            ic[0],
        )
    )
    return indexed[-1][1]


def resolve_practitioner(
    facts: PatientFacts, explicit: str | None, month_end: datetime, tz: tzinfo
) -> tuple[str | None, str]:
    """Billing practitioner: explicit option, else the consent's PPRF actor, else generalPractitioner."""
    if explicit and explicit.strip():
        return explicit.strip(), "option"
    named = [c for c in ccm_consents(facts) if c.billing_practitioner]
    if named:
        in_time = [c for c in named if c.obtained_at is None or _aware(c.obtained_at, tz) < month_end]
        return _latest(in_time or named, tz).billing_practitioner, "consent"
    if facts.patient.general_practitioners:
        return facts.patient.general_practitioners[0], "general-practitioner"
    return None, "unknown"


def practitioner_unknown(pm: PatientMonth) -> tuple[Finding, ...]:
    if pm.practitioner:
        return ()
    return (
        Finding(
            rule_ids.BILLING_PRACTITIONER_UNKNOWN,
            "consent",
            "blocker",
            "No billing practitioner is known: none was chosen, the CCM consent names none and the patient "
            "has no general practitioner. Choose the billing practitioner (or record them on the consent).",
            str(CITE_PRACTITIONER),
            (pm.facts.patient.id,),
        ),
    )


def _consent(
    rule: str, severity: str, message: str, evidence: tuple[str, ...], cite: Citation = CITE_CONSENT
) -> Finding:
    return Finding(rule, "consent", severity, message, str(cite), evidence)  # type: ignore[arg-type]


def check(pm: PatientMonth) -> ConsentState:
    """The consent findings for the month and the window in which minutes may count."""
    recorded = ccm_consents(pm.facts)
    if not recorded:
        pending = tuple(c.id for c in pm.facts.consents if "ccm" in c.programs)
        message = (
            "No CCM consent is recorded. Before CCM starts, tell the patient that CCM is available, that "
            "cost sharing applies, that only one practitioner can bill CCM per month and that they may stop "
            "at any time; record their verbal or written answer."
        )
        missing = _consent(rule_ids.CONSENT_MISSING, "blocker", message, pending)
        return ConsentState((missing,), None, pm.end, None)
    mine = [c for c in recorded if not pm.practitioner or c.billing_practitioner in (None, pm.practitioner)]
    if not mine:
        others = ", ".join(sorted({c.billing_practitioner or "" for c in recorded}))
        message = (
            f"The CCM consent names a different billing practitioner ({others}), not {pm.practitioner}. A "
            "new consent is needed when the billing practitioner changes."
        )
        ids = tuple(c.id for c in recorded)
        blocker = _consent(rule_ids.CONSENT_OTHER_PRACTITIONER, "blocker", message, ids, CITE_RECONSENT)
        return ConsentState((blocker,), None, pm.end, None)
    obtained = [c for c in mine if c.obtained_at is None or pm.before_end(c.obtained_at)]
    if not obtained:
        message = (
            f"The CCM consent was obtained after {pm.month}; CCM cannot be billed for a month before consent."
        )
        blocker = _consent(rule_ids.CONSENT_MISSING, "blocker", message, tuple(c.id for c in mine))
        return ConsentState((blocker,), None, pm.end, None)

    current = _latest(obtained, pm.tz)
    ids = (current.id,)
    status = current.status.lower()
    counts_from = pm.aware(current.obtained_at) if current.obtained_at else None
    counts_until: datetime | None = None
    findings: list[Finding] = []
    if status == "rejected":
        message = "The patient declined CCM. Do not bill; the patient may agree later (record a new consent)."
        return ConsentState(
            (_consent(rule_ids.CONSENT_DECLINED, "blocker", message, ids),), current, pm.end, None
        )
    if status == "inactive":
        if current.stop_date is None:
            message = (
                "The CCM consent is inactive (the patient stopped CCM) but the stop date is not recorded. "
                "Record the stop date: CCM stays billable through the end of the month of the stop."
            )
            return ConsentState(
                (_consent(rule_ids.CONSENT_STOPPED, "blocker", message, ids),), current, counts_from, None
            )
        stop_month: Month = pm.month_of(current.stop_date)
        nxt = stop_month.next()
        counts_until = datetime(nxt.year, nxt.month, 1, tzinfo=pm.tz)
        if stop_month < pm.month:
            message = (
                f"The patient stopped CCM in {stop_month}; the stop took effect at the end of that month, so "
                f"{pm.month} cannot be billed. A new consent is needed to restart."
            )
            blocker = _consent(rule_ids.CONSENT_STOPPED, "blocker", message, ids)
            return ConsentState((blocker,), current, counts_from, counts_until)
        if stop_month == pm.month:
            message = (
                f"The patient stopped CCM during {pm.month}; the stop takes effect at the end of this month, "
                "so this month is still billable and the next is not."
            )
            findings.append(_consent(rule_ids.CONSENT_STOP_EFFECTIVE, "info", message, ids))
    if current.obtained_at is None:
        message = (
            "The CCM consent has no date, so it cannot be shown to precede the counted minutes. Record when "
            "it was obtained."
        )
        findings.append(_consent(rule_ids.CONSENT_UNDATED, "warning", message, ids))
    if pm.practitioner and current.billing_practitioner is None:
        message = (
            f"The CCM consent does not name the billing practitioner; record {pm.practitioner} on it so an "
            "auditor can see who the patient agreed to."
        )
        unnamed = rule_ids.CONSENT_PRACTITIONER_UNNAMED
        findings.append(_consent(unnamed, "warning", message, ids, CITE_PRACTITIONER))
    missing = sorted(DISCLOSURES - set(current.disclosures))
    if missing:
        told = "; ".join(DISCLOSURE_WORDS[m] for m in missing)
        message = (
            f"The consent does not record that the patient was told {told}. CMS requires all four "
            "disclosures to be documented."
        )
        findings.append(_consent(rule_ids.CONSENT_DISCLOSURES_INCOMPLETE, "warning", message, ids))
    return ConsentState(tuple(findings), current, counts_from, counts_until)
