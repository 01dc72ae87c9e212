"""Worklist rows from Verdicts (+ the facts they came from) and the program lead's filters.

Pure: no I/O. A row is built from exactly the Verdict that evaluating the patient alone gives, plus a
few counts read from the same facts (CCM claims already in the month, CCM time entries).
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any, Literal

from rules.month import Month, zone
from rules.packs import PolicyPack, resolve_pack
from rules.records import PatientFacts
from rules.verdict import Verdict, to_json
from smart_app.readiness import wording

Filter = Literal["all", "ready", "close", "blocked", "enroll"]
FILTERS: tuple[Filter, ...] = ("all", "ready", "close", "blocked", "enroll")
FILTER_LABELS = {
    "all": "Everyone",
    "ready": "Ready to bill",
    "close": "Close to a threshold",
    "blocked": "Blocked",
    "enroll": "Enrollment opportunities",
}
DEFAULT_CLOSE_MINUTES = 10
CCM_FAMILY = "ccm"
BILLED_STATUSES = frozenset({"billable", "billed"})
CSV_COLUMNS = (
    "patient",
    "name",
    "status",
    "codes",
    "clinical_staff_minutes",
    "practitioner_minutes",
    "next_code",
    "minutes_to_next",
    "days_left",
    "blockers",
    "warnings",
    "next_step",
    "month_state",
    "national_payment",
)
# A closed month is one of these, with its reason.
CLOSED_LABELS = {"billed": "Billed", "not-billed": "Ready, not billed", "missed": "Missed"}


CATEGORY_WORDS = {
    "eligibility": "eligibility", "consent": "consent", "care-plan": "care plan",
    "initiating-visit": "initiating visit", "time": "time", "conflict": "conflict",
    "documentation": "documentation",
}


@dataclass(frozen=True)
class Blocker:
    category: str
    rule: str
    message: str


@dataclass(frozen=True)
class WorklistRow:
    """One patient-month on the worklist."""

    patient: str  # "Patient/ID"
    name: str
    month: str
    status: str
    codes: tuple[tuple[str, int], ...]
    clinical_staff_minutes: int
    practitioner_minutes: int
    next_code: str | None
    minutes_to_next: int | None
    days_left: int
    blockers: tuple[Blocker, ...]
    payment: Decimal  # national non-facility, the pack's amounts
    eligible: bool  # no eligibility blocker
    consented: bool  # eligible and a CCM consent in effect this month
    enrollment_opportunity: bool  # eligible and no CCM consent on file
    billed_codes: tuple[tuple[str, int], ...]  # CCM ChargeItems already in the month
    billed_payment: Decimal
    ccm_entries: int  # CCM time entries in the month
    entries_with_warnings: int  # of those, named by a documentation warning
    has_ccm_data: bool
    verdict: dict[str, Any] | None = field(default=None, compare=False)  # to_json(verdict)
    warnings: tuple[Blocker, ...] = ()  # documentation and other warnings (shown on ready rows too)
    next_step: str = ""  # the verdict's single next step
    closed: bool = False  # the month is over
    billing_practitioner: str | None = None

    @property
    def month_state(self) -> str:
        """"open" while the month runs; once over: billed / not-billed (ready, still to bill) / missed."""
        if not self.closed:
            return "open"
        if self.billed:
            return "billed"
        return "not-billed" if self.status == "ready" else "missed"

    @property
    def month_state_reason(self) -> str:
        state = self.month_state
        if state == "billed":
            return f"Billed {codes_text(self.billed_codes)}."
        if state == "not-billed":
            return f"Ready but not marked as billed: {codes_text(self.codes)}."
        if state == "missed":
            return self.blockers[0].message if self.blockers else (self.next_step or "No code was reached.")
        return ""

    @property
    def chips(self) -> list[tuple[str, str, int]]:
        """(severity, category label, count) chips: blockers first, then warnings."""
        out: list[tuple[str, str, int]] = []
        for severity, items in (("blocker", self.blockers), ("warning", self.warnings)):
            counts = Counter(b.category for b in items)
            out.extend((severity, CATEGORY_WORDS.get(c, c), n) for c, n in counts.items())
        return out

    @property
    def on_worklist(self) -> bool:
        """Rows shown: any CCM data, or eligible."""
        return self.has_ccm_data or self.eligible

    @property
    def billed(self) -> bool:
        return bool(self.billed_codes)

    @property
    def blocker_reasons(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(b.category for b in self.blockers))


def has_ccm_data(facts: PatientFacts) -> bool:
    """Any CCM consent, CCM care plan or CCM attestation on file (any date), or CCM time in the months'
    reach (the facts are read with it: `verdicts_for_months`)."""
    return (
        any("ccm" in c.programs for c in facts.consents)
        or any("ccm" in p.programs for p in facts.care_plans)
        or any(t.program == "ccm" for t in facts.time_entries)
        or bool(facts.attestations)
    )


def billed_in_month(
    facts: PatientFacts, month: Month, tz: str, pack: PolicyPack, practitioner: str | None = None
) -> tuple[tuple[str, int], ...]:
    """CCM-family ChargeItems (billable/billed) whose occurrence starts in the month, as (code, units);
    with `practitioner`, only that practitioner's (another practitioner's claim is a conflict, not ours)."""
    start, end = month.bounds(zone(tz))
    out: list[tuple[str, int]] = []
    for item in facts.billed:
        spec = pack.find(item.code)
        if spec is None or spec.family != CCM_FAMILY or item.status not in BILLED_STATUSES:
            continue
        if practitioner and item.performer and item.performer != practitioner:
            continue
        if item.start is not None and start <= item.start < end:
            out.append((item.code, max(1, item.units)))
    return tuple(sorted(out))


def build_row(
    facts: PatientFacts,
    verdict: Verdict,
    *,
    today: date,
    pack: PolicyPack | None = None,
    keep_verdict: bool = True,
) -> WorklistRow:
    """The worklist row of one patient-month (pure)."""
    month = Month.parse(verdict.month)
    tz = verdict.timezone
    policy = pack or resolve_pack(verdict.policy, month)
    start, end = month.bounds(zone(tz))
    eligible = verdict.status != "not-eligible"
    ccm_ids = {
        t.id
        for t in facts.time_entries
        if t.program == "ccm" and t.status == "finished" and start <= t.start < end
    }
    warned = {
        e
        for f in verdict.findings
        if f.category == "documentation" and f.severity == "warning"
        for e in f.evidence
        if e in ccm_ids
    }
    billed = billed_in_month(facts, month, tz, policy, verdict.billing_practitioner)
    billed_payment = sum(
        (
            (policy.find(code).payment or Decimal(0)) * units
            for code, units in billed
            if policy.find(code) is not None
        ),
        Decimal(0),
    )  # type: ignore[union-attr]
    nt = verdict.next_threshold
    return WorklistRow(
        patient=verdict.patient,
        name=facts.patient.name,
        month=verdict.month,
        status=verdict.status,
        codes=tuple((c.code, c.units) for c in verdict.codes),
        clinical_staff_minutes=verdict.minutes.clinical_staff,
        practitioner_minutes=verdict.minutes.billing_practitioner,
        next_code=nt.code if nt else None,
        minutes_to_next=nt.minutes_needed if nt else None,
        days_left=month.days_left(today),
        blockers=tuple(Blocker(f.category, f.rule, f.message) for f in verdict.blockers),
        payment=verdict.payment_total,
        eligible=eligible,
        consented=eligible and verdict.consent_state == "given",
        enrollment_opportunity=eligible and verdict.consent_state == "missing",
        billed_codes=billed,
        billed_payment=billed_payment,
        ccm_entries=len(ccm_ids),
        entries_with_warnings=len(warned),
        has_ccm_data=has_ccm_data(facts),
        verdict=to_json(verdict) if keep_verdict else None,
        warnings=tuple(
            Blocker(f.category, f.rule, f.message) for f in verdict.findings if f.severity == "warning"
        ),
        next_step=wording.next_step(verdict),
        closed=bool(getattr(verdict, "month_closed", False)) or today > month.last_day,
        billing_practitioner=verdict.billing_practitioner,
    )


# ---------------------------------------------------------------------- filters


def is_close(row: WorklistRow, n: int) -> bool:
    """Within `n` minutes of the next threshold, not blocked, with days left in the month."""
    return (
        row.status in ("ready", "not-yet")
        and row.minutes_to_next is not None
        and 0 < row.minutes_to_next <= n
        and row.days_left > 0
        and not row.closed
    )


def apply_filter(
    rows: Iterable[WorklistRow],
    which: str = "all",
    *,
    n: int = DEFAULT_CLOSE_MINUTES,
    reason: str | None = None,
) -> list[WorklistRow]:
    """The rows one filter shows, in a useful order (close: fewest minutes first)."""
    if which not in FILTERS:
        raise ValueError(f"unknown filter {which!r}; use one of: {', '.join(FILTERS)}")
    if n < 0:
        raise ValueError("the close-to-threshold distance must be zero or more minutes")
    shown = [r for r in rows if r.on_worklist]
    if which == "ready":  # can be billed now: ready and not yet billed this month
        shown = [r for r in shown if r.status == "ready" and not r.billed]
    elif which == "close":
        shown = sorted(
            (r for r in shown if is_close(r, n)), key=lambda r: (r.minutes_to_next or 0, r.patient)
        )
    elif which == "blocked":
        shown = [
            r for r in shown if r.status == "blocked" and (reason is None or reason in r.blocker_reasons)
        ]
    elif which == "enroll":
        shown = [r for r in shown if r.enrollment_opportunity]
    return shown


def blocked_reasons(rows: Iterable[WorklistRow]) -> list[tuple[str, int]]:
    """Blocked rows per blocker category (a row with two categories counts in both)."""
    counts: Counter[str] = Counter()
    for r in rows:
        if r.on_worklist and r.status == "blocked":
            counts.update(r.blocker_reasons)
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def sort_rows(rows: Iterable[WorklistRow]) -> list[WorklistRow]:
    order = {"ready": 0, "not-yet": 1, "blocked": 2, "not-eligible": 3}
    return sorted(rows, key=lambda r: (order.get(r.status, 9), r.name.lower(), r.patient))


# ---------------------------------------------------------------------- output


def codes_text(codes: Sequence[tuple[str, int]]) -> str:
    return " ".join(f"{c}x{u}" if u > 1 else c for c, u in codes)


def row_json(row: WorklistRow) -> dict[str, Any]:
    """The verdict's JSON (patient, status, codes, ... as `evaluate --format json`) plus worklist fields."""
    base = (
        dict(row.verdict)
        if row.verdict is not None
        else {
            "patient": row.patient,
            "month": row.month,
            "status": row.status,
            "codes": [{"code": c, "units": u} for c, u in row.codes],
        }
    )
    base.update(
        {
            "name": row.name,
            "minutes_to_next": row.minutes_to_next,
            "next_code": row.next_code,
            "days_left": row.days_left,
            "blockers": [
                {"category": b.category, "rule": b.rule, "message": b.message} for b in row.blockers
            ],
            "national_payment": str(row.payment),
            "eligible": row.eligible,
            "consented": row.consented,
            "enrollment_opportunity": row.enrollment_opportunity,
            "already_billed": [{"code": c, "units": u} for c, u in row.billed_codes],
            "warnings": [
                {"category": b.category, "rule": b.rule, "message": b.message} for b in row.warnings
            ],
            "next_step": row.next_step,
            "month_state": row.month_state,
        }
    )
    return base


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    # Spreadsheet formula injection: a cell must never start with a formula character.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def to_csv(rows: Iterable[WorklistRow]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        writer.writerow(
            [
                _cell(v)
                for v in (
                    r.patient,
                    r.name,
                    r.status,
                    codes_text(r.codes),
                    r.clinical_staff_minutes,
                    r.practitioner_minutes,
                    r.next_code,
                    r.minutes_to_next,
                    r.days_left,
                    " | ".join(f"{b.category}: {b.message}" for b in r.blockers),
                    " | ".join(f"{b.category}: {b.message}" for b in r.warnings),
                    r.next_step,
                    r.month_state if not r.closed else f"{r.month_state}: {r.month_state_reason}",
                    r.payment,
                )
            ]
        )
    return out.getvalue()
