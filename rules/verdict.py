"""The one Verdict every surface renders (panel, CLI, worklist, CDS card, audit packet)."""

from __future__ import annotations

from dataclasses import field
from decimal import Decimal
from typing import Any, Literal

from rules.record_type import record
from rules.records import Skipped

Status = Literal["ready", "not-yet", "blocked", "not-eligible"]
Category = Literal[
    "eligibility", "consent", "care-plan", "initiating-visit", "time", "conflict", "documentation"
]
Severity = Literal["blocker", "warning", "info"]
ConsentStateName = Literal["given", "missing", "declined", "stopped"]

STATUSES: tuple[Status, ...] = ("ready", "not-yet", "blocked", "not-eligible")
CATEGORIES: tuple[Category, ...] = (
    "eligibility", "consent", "care-plan", "initiating-visit", "time", "conflict", "documentation",
)


@record
class Finding:
    """One rule's result: what is wrong or worth knowing, with its source and evidence."""

    rule: str  # stable id, one of rules.rule_ids (e.g. consent.missing)
    category: Category
    severity: Severity
    message: str  # plain language: what is wrong and what to do
    citation: str  # CMS source, e.g. "CMS MLN909188; cms-rules.md §3.3 [S1,S3]"
    evidence: tuple[str, ...] = ()  # "Type/ID" references


@record
class CodeLine:
    """A code to bill, its units, label and payment."""

    code: str
    units: int
    label: str = ""  # our own short label (CPT descriptors belong to the AMA)
    payment_each: Decimal | None = None  # national non-facility amount from the pack


@record
class NextThreshold:
    """The next code within reach and the minutes it still needs."""

    code: str
    minutes_needed: int  # whole minutes still to log (a threshold is met in full, never rounded)
    track: str = ""  # "clinical-staff" | "practitioner" | "complex"
    threshold_total: int = 0  # the total minutes at which `code` is earned


@record
class ChronicCondition:
    """A condition counted as chronic, with the value set that says so and its evidence."""

    system: str
    code: str
    display: str
    source: str  # "CCIR" | "eCQM" | "curated"
    condition_key: str  # the distinct condition this code belongs to (e.g. "diabetes")
    condition_label: str
    evidence: tuple[str, ...]


@record
class ConditionReview:
    """Every condition on the list, chronic or not, with how it was classified (for the panel)."""

    evidence: str  # "Condition/ID"
    display: str
    system: str
    code: str
    chronic: bool
    source: str | None  # which source classified it; None when no source knows the code
    reason: str  # e.g. "CCIR: chronic", "resolved", "not in any chronic list"


@record
class Minutes:
    """Minutes counted this month, and by program."""

    clinical_staff: int  # counted CCM minutes toward 99490/99439/99487/99489 (incl. practitioner's own)
    billing_practitioner: int  # counted CCM minutes by the billing practitioner personally
    by_program: tuple[tuple[str, int], ...] = ()  # all logged minutes in the month per program
    not_counted: int = 0  # CCM minutes logged but not counted (before consent, inpatient, overlap, ...)


@record
class Verdict:
    """The answer for one patient-month: status, codes, minutes, findings and what was skipped."""

    patient: str
    month: str  # "YYYY-MM"
    policy: str  # pack id, e.g. "cms-pfs-2026"
    policy_version: str
    status: Status
    codes: tuple[CodeLine, ...]
    minutes: Minutes
    next_threshold: NextThreshold | None
    chronic_conditions: tuple[ChronicCondition, ...]
    findings: tuple[Finding, ...]
    skipped: tuple[Skipped, ...] = ()
    billing_practitioner: str | None = None
    track: str | None = None  # "clinical-staff" | "practitioner" | "complex" | None
    track_reason: str = ""
    conditions_reviewed: tuple[ConditionReview, ...] = field(default=())
    timezone: str = "UTC"
    # What faces need, computed once by evaluate() (not part of to_json; see to_face_json).
    billed_in_month: bool = False  # a CCM-family service already billed this month by this practitioner
    consent_state: ConsentStateName = "missing"
    distinct_conditions: int = 0  # distinct chronic conditions counted (the CCM minimum is 2)
    next_step: str = ""  # the one plain-language next step matching `status`
    month_closed: bool = False  # the month was over when evaluated (no "log more time" advice)

    @property
    def payment_total(self) -> Decimal:
        return sum(
            ((c.payment_each or Decimal(0)) * c.units for c in self.codes), Decimal(0)
        )

    def by_category(self, category: str) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.category == category)

    @property
    def blockers(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "blocker")


def to_json(v: Verdict) -> dict[str, Any]:
    """The JSON contract of `ccm-ready evaluate --format json` (see README)."""
    return {
        "patient": v.patient,
        "month": v.month,
        "policy": v.policy,
        "policy_version": v.policy_version,
        "status": v.status,
        "codes": [{"code": c.code, "units": c.units} for c in v.codes],
        "minutes": {
            "clinical_staff": v.minutes.clinical_staff,
            "billing_practitioner": v.minutes.billing_practitioner,
        },
        "next_threshold": (
            {"code": v.next_threshold.code, "minutes_needed": v.next_threshold.minutes_needed}
            if v.next_threshold
            else None
        ),
        "chronic_conditions": [
            {
                "system": c.system,
                "code": c.code,
                "display": c.display,
                "source": c.source,
                "condition": c.condition_key,
                "evidence": list(c.evidence),
            }
            for c in v.chronic_conditions
        ],
        "findings": [
            {
                "rule": f.rule,
                "category": f.category,
                "severity": f.severity,
                "message": f.message,
                "citation": f.citation,
                "evidence": list(f.evidence),
            }
            for f in v.findings
        ],
        "skipped": [{"resource": s.resource, "reason": s.reason} for s in v.skipped],
        "billing_practitioner": v.billing_practitioner,
        "track": v.track,
        "track_reason": v.track_reason,
        "payment": {
            "national_non_facility": str(v.payment_total),
            "lines": [
                {
                    "code": c.code,
                    "units": c.units,
                    "each": str(c.payment_each) if c.payment_each is not None else None,
                }
                for c in v.codes
            ],
        },
    }


def to_face_json(v: Verdict) -> dict[str, Any]:
    """`to_json` plus the fields faces render directly (kept apart so the CLI contract stays stable)."""
    return {
        **to_json(v),
        "billed_in_month": v.billed_in_month,
        "consent_state": v.consent_state,
        "distinct_conditions": v.distinct_conditions,
        "next_step": v.next_step,
        "month_closed": v.month_closed,
    }
