"""Program metrics from worklist rows (pure formulas; docs/metrics.md explains each one).

Every formula is also stated in `FORMULAS`, which the program page prints next to its chart.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from smart_app.program.worklist import WorklistRow

# (label, lowest minutes, highest minutes or None) of the monthly-minutes histogram.
MINUTE_BINS: tuple[tuple[str, int, int | None], ...] = (
    ("0", 0, 0),
    ("1-19", 1, 19),
    ("20-39", 20, 39),
    ("40-59", 40, 59),
    ("60+", 60, None),
)

FORMULAS: dict[str, str] = {
    "eligible": "eligible = patients on the worklist whose verdict has no eligibility blocker "
    "(status is not 'not-eligible')",
    "consented": "consented = eligible patients with a CCM consent in effect this month "
    "(no consent.missing / consent.declined / consent.stopped finding)",
    "billed": "billed = patients with at least one CCM ChargeItem (99490, 99439, 99491, 99437, 99487, "
    "99489; status billable or billed) whose occurrence starts in the month",
    "consent_rate": "consent rate = consented / eligible (none when no patient is eligible)",
    "minutes": "minutes distribution = consented patients counted by their counted CCM minutes this month "
    "(verdict minutes.clinical_staff, which includes the practitioner's own time), in bins "
    "0, 1-19, 20-39, 40-59, 60+",
    "warning_share": "documentation warning share = CCM time entries this month named by a documentation "
    "warning / all finished CCM time entries this month",
    "expected_revenue": "expected revenue = sum over 'ready' patients of units x national non-facility "
    "payment of each code the verdict selected (policy pack amounts)",
    "billed_revenue": "billed revenue = sum over CCM ChargeItems in the month of units x the pack's "
    "national non-facility payment for that code",
    "trend": "trend = the same eligible, consented, billed counts and revenues for each month, "
    "each computed from that month's verdicts",
}


@dataclass(frozen=True)
class MonthMetrics:
    month: str
    patients: int
    eligible: int
    consented: int
    billed: int
    ready: int
    consent_rate: Decimal | None
    minutes_histogram: tuple[tuple[str, int], ...]
    entries: int
    entries_with_warnings: int
    warning_share: Decimal | None
    expected_revenue: Decimal
    billed_revenue: Decimal

    @property
    def funnel(self) -> tuple[tuple[str, int], ...]:
        return (("Eligible", self.eligible), ("Consented", self.consented), ("Billed", self.billed))


def ratio(numerator: int, denominator: int) -> Decimal | None:
    """numerator / denominator to 4 decimal places (None when the denominator is 0)."""
    if denominator <= 0:
        return None
    return (Decimal(numerator) / Decimal(denominator)).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)


def minutes_bin(minutes: int) -> str:
    for label, lo, hi in MINUTE_BINS:
        if minutes >= lo and (hi is None or minutes <= hi):
            return label
    return MINUTE_BINS[0][0]


def month_metrics(month: str, rows: Iterable[WorklistRow]) -> MonthMetrics:
    """Every metric of one month from that month's rows (rows not on the worklist are ignored)."""
    shown = [r for r in rows if r.on_worklist]
    eligible = [r for r in shown if r.eligible]
    consented = [r for r in eligible if r.consented]
    bins = dict.fromkeys((label for label, _lo, _hi in MINUTE_BINS), 0)
    for r in consented:
        bins[minutes_bin(r.clinical_staff_minutes)] += 1
    entries = sum(r.ccm_entries for r in shown)
    warned = sum(r.entries_with_warnings for r in shown)
    return MonthMetrics(
        month=month,
        patients=len(shown),
        eligible=len(eligible),
        consented=len(consented),
        billed=sum(1 for r in shown if r.billed),
        ready=sum(1 for r in shown if r.status == "ready"),
        consent_rate=ratio(len(consented), len(eligible)),
        minutes_histogram=tuple(bins.items()),
        entries=entries,
        entries_with_warnings=warned,
        warning_share=ratio(warned, entries),
        expected_revenue=sum((r.payment for r in shown if r.status == "ready"), Decimal(0)),
        billed_revenue=sum((r.billed_payment for r in shown), Decimal(0)),
    )


def trend(by_month: Sequence[tuple[str, Iterable[WorklistRow]]]) -> list[MonthMetrics]:
    """Month-over-month metrics, oldest first."""
    return [month_metrics(m, rows) for m, rows in sorted(by_month, key=lambda mr: mr[0])]


def percent(value: Decimal | None) -> str:
    return "n/a" if value is None else f"{(value * 100).quantize(Decimal('0.1'))}%"
