"""The shared wording every face uses: status labels, the next-step sentence, money, months.

Pure: no Flask, no I/O. The panel, worklist, CDS card, audit packet and CLI all speak with these words,
so a status reads the same everywhere.
"""

from __future__ import annotations

from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from rules.month import Month
from rules.verdict import Verdict

STATUS_LABELS: dict[str, str] = {
    "ready": "Ready to bill",
    "not-yet": "Not yet",
    "blocked": "Blocked",
    "not-eligible": "Not eligible",
}
STATUS_ORDER: tuple[str, ...] = tuple(STATUS_LABELS)
# The lower-case phrase ("Status for 2026-10: ready to bill").
STATUS_WORDS: dict[str, str] = {
    "ready": "ready to bill",
    "not-yet": "not yet billable",
    "blocked": "blocked",
    "not-eligible": "not eligible",
}


# A month that is over is never "not yet": it closed without a billable code.
CLOSED_NOT_YET_LABEL = "Not billed (month closed)"


def status_label(status: str, month_closed: bool = False) -> str:
    if month_closed and status == "not-yet":
        return CLOSED_NOT_YET_LABEL
    return STATUS_LABELS.get(status, status)


def status_words(status: str) -> str:
    return STATUS_WORDS.get(status, status)


def format_money(amount: Decimal | float | int | None) -> str:
    """US dollars with cents ("$1,234.50"); "n/a" when there is no amount."""
    if amount is None:
        return "n/a"
    q = Decimal(str(amount)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    sign = "-" if q < 0 else ""
    return f"{sign}${abs(q):,.2f}"


def month_label(month: Month) -> str:
    """"October 2026"."""
    return date(month.year, month.month, 1).strftime("%B %Y")


def codes_text(verdict: Verdict) -> str:
    """"99490 + 2 × 99439", or "none"."""
    parts = [c.code if c.units == 1 else f"{c.units} × {c.code}" for c in verdict.codes]
    return " + ".join(parts) or "none"


def next_step(verdict: Verdict) -> str:
    """The single next step, in words that match the status (from the Verdict, computed in rules/)."""
    carried = getattr(verdict, "next_step", "")
    if carried:
        return str(carried)
    if verdict.status == "ready":
        return f"Bill {codes_text(verdict)}."
    if verdict.status in ("blocked", "not-eligible"):
        first = verdict.blockers[0] if verdict.blockers else None
        return first.message if first else "Nothing is billable this month."
    nt = verdict.next_threshold
    if nt:
        return f"Log {nt.minutes_needed} more minutes to reach {nt.code}."
    return "Log care-management time."
