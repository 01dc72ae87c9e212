"""Denial analytics and verdict vs outcome, from the remittance store (pure functions over its rows).

Effective line: remittances are read oldest first; per (patient-month or claim id, code) a reversal
(CLP02 22) cancels the line in effect and any other line replaces it (a correction). The analytics count
the lines in effect; a line reversed and never corrected counts as "reversed". See docs/metrics.md.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

from rules.denials import AREAS, CAUSES, cause_of
from smart_app.program.remittance_store import HandedOffClaim, StoredLine


def rate(n: int, d: int) -> Decimal | None:
    if d <= 0:
        return None
    return (Decimal(n) / Decimal(d)).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)


def _key(line: StoredLine) -> tuple[str, str, str]:
    who = line.patient or f"claim:{line.claim_id}"
    return who, line.month or "", line.code


def effective_lines(lines: Iterable[StoredLine]) -> tuple[list[StoredLine], int]:
    """(lines in effect, keys reversed and not corrected) from lines in load order."""
    current: dict[tuple[str, str, str], StoredLine | None] = {}
    for line in lines:
        current[_key(line)] = None if line.outcome == "reversal" else line
    kept = [ln for ln in current.values() if ln is not None]
    return kept, sum(1 for ln in current.values() if ln is None)


def line_cause(line: StoredLine) -> str:
    carcs = [carc for _g, carc, _a in line.adjustments]
    return cause_of(carcs, line.remarks).cause


@dataclass(frozen=True)
class MonthDenials:
    month: str
    lines: int
    billed: Decimal
    paid: Decimal
    paid_lines: int
    denied_lines: int
    adjusted_lines: int
    reversed_lines: int
    denied_revenue: Decimal  # billed charge of the denied lines
    denial_rate: Decimal | None  # denied lines / lines in effect
    causes: tuple[tuple[str, int, Decimal], ...]  # (cause, lines, billed) most first
    areas: tuple[tuple[str, int], ...]  # (area, denied lines) in AREAS order

    @property
    def outcomes(self) -> tuple[tuple[str, int], ...]:
        return (("Paid", self.paid_lines), ("Adjusted", self.adjusted_lines), ("Denied", self.denied_lines))


def month_denials(month: str, lines: Sequence[StoredLine]) -> MonthDenials:
    """One service month's figures from that month's stored lines (load order)."""
    kept, reversed_n = effective_lines(lines)
    denied = [ln for ln in kept if ln.outcome == "denied"]
    by_cause: dict[str, list[StoredLine]] = defaultdict(list)
    for ln in denied:
        by_cause[line_cause(ln)].append(ln)
    causes = sorted(
        ((c, len(ls), sum((x.charge for x in ls), Decimal(0))) for c, ls in by_cause.items()),
        key=lambda t: (-t[1], t[0]),
    )
    area_counts: Counter[str] = Counter()
    for c, n, _amt in causes:
        area_counts[CAUSES[c][0]] += n
    return MonthDenials(
        month=month,
        lines=len(kept),
        billed=sum((ln.charge for ln in kept), Decimal(0)),
        paid=sum((ln.paid for ln in kept), Decimal(0)),
        paid_lines=sum(1 for ln in kept if ln.outcome == "paid"),
        denied_lines=len(denied),
        adjusted_lines=sum(1 for ln in kept if ln.outcome == "adjusted"),
        reversed_lines=reversed_n,
        denied_revenue=sum((ln.charge for ln in denied), Decimal(0)),
        denial_rate=rate(len(denied), len(kept)),
        causes=tuple(causes),
        areas=tuple((a, area_counts.get(a, 0)) for a in AREAS),
    )


def by_month(lines: Iterable[StoredLine]) -> list[MonthDenials]:
    grouped: dict[str, list[StoredLine]] = defaultdict(list)
    for ln in lines:
        grouped[ln.month or "unknown"].append(ln)
    return [month_denials(m, grouped[m]) for m in sorted(grouped)]


def average_payment(lines: Iterable[StoredLine]) -> Decimal | None:
    """Σ paid of the lines in effect / patient-months (or claims) with a payment; None when none was paid."""
    kept, _ = effective_lines(lines)
    per: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for ln in kept:
        per[(ln.patient or f"claim:{ln.claim_id}", ln.month or "")] += ln.paid
    paid = [v for v in per.values() if v > 0]
    if not paid:
        return None
    return (sum(paid, Decimal(0)) / len(paid)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


# ---------------------------------------------------------------------- verdict vs outcome


@dataclass(frozen=True)
class Comparison:
    patient: str
    month: str
    app_said: str  # ready | not-yet | blocked | not-eligible | unknown
    app_codes: tuple[tuple[str, int], ...]
    verdict_id: str
    payer: str  # paid | denied | partly paid | reversed
    paid: Decimal
    denied_codes: tuple[str, ...]
    causes: tuple[str, ...]
    rules_cover: tuple[str, ...]  # verdict categories that should have caught the denial
    false_ready: bool


@dataclass(frozen=True)
class VerdictOutcome:
    cases: tuple[Comparison, ...]
    remitted: int  # remitted patient-months (matched to a patient)
    said_ready: int  # of those, the app said ready
    false_ready: int
    false_ready_rate: Decimal | None  # false_ready / said_ready
    unmatched_lines: int
    false_ready_cases: tuple[Comparison, ...] = field(default=())


def verdict_vs_outcome(
    lines: Iterable[StoredLine],
    claims: Iterable[HandedOffClaim],
    statuses: Mapping[tuple[str, str], str] | None = None,
) -> VerdictOutcome:
    """Every remitted patient-month: what the app said (hand-off, else `statuses`) against the payer."""
    all_lines = list(lines)
    kept, _ = effective_lines(all_lines)
    unmatched = sum(1 for ln in kept if ln.patient is None)
    said = {(c.patient, c.month): c for c in claims}
    groups: dict[tuple[str, str], list[StoredLine]] = defaultdict(list)
    for ln in all_lines:
        if ln.patient and ln.month:
            groups[(ln.patient, ln.month)].append(ln)
    cases = []
    for (patient, month), group in sorted(groups.items()):
        eff, _rev = effective_lines(group)
        claim = said.get((patient, month))
        app = claim.verdict_status if claim else (statuses or {}).get((patient, month), "unknown")
        denied = [ln for ln in eff if ln.outcome == "denied"]
        if not eff:
            payer = "reversed"
        elif len(denied) == len(eff):
            payer = "denied"
        elif denied or any(ln.outcome == "adjusted" for ln in eff):
            payer = "partly paid"
        else:
            payer = "paid"
        causes, covers = [], []
        for ln in denied:
            carcs = [carc for _g, carc, _a in ln.adjustments]
            rule = cause_of(carcs, ln.remarks)
            causes.append(rule.cause)
            if rule.rules_cover:
                covers.append(rule.rules_cover)
        cases.append(
            Comparison(
                patient=patient,
                month=month,
                app_said=app,
                app_codes=claim.codes if claim else (),
                verdict_id=claim.verdict_id if claim else "",
                payer=payer,
                paid=sum((ln.paid for ln in eff), Decimal(0)),
                denied_codes=tuple(ln.code for ln in denied),
                causes=tuple(dict.fromkeys(causes)),
                rules_cover=tuple(dict.fromkeys(covers)),
                false_ready=app == "ready" and bool(covers),
            )
        )
    ready = [c for c in cases if c.app_said == "ready"]
    false = [c for c in ready if c.false_ready]
    return VerdictOutcome(
        cases=tuple(cases),
        remitted=len(cases),
        said_ready=len(ready),
        false_ready=len(false),
        false_ready_rate=rate(len(false), len(ready)),
        unmatched_lines=unmatched,
        false_ready_cases=tuple(false),
    )
