"""The one plain-language next step a verdict implies (cms-rules.md §4, §5): the faces print it as is."""

from __future__ import annotations

from rules import rule_ids
from rules.verdict import CodeLine, Finding, NextThreshold, Status

TRACK_WORDS: dict[str, str] = {
    "clinical-staff": "clinical-staff",
    "practitioner": "practitioner",
    "complex": "complex-CCM clinical-staff",
}


def _codes(codes: tuple[CodeLine, ...]) -> str:
    return " + ".join(f"{c.code} ×{c.units}" if c.units > 1 else c.code for c in codes)


def _minutes(nt: NextThreshold) -> str:
    who = TRACK_WORDS.get(nt.track, nt.track or "CCM")
    unit = "minute" if nt.minutes_needed == 1 else "minutes"
    return f"{nt.minutes_needed} {who} {unit}"


def next_step(
    status: Status,
    findings: tuple[Finding, ...],
    codes: tuple[CodeLine, ...],
    next_threshold: NextThreshold | None,
    month_closed: bool,
) -> str:
    """Blocked / not eligible: the first blocker's own action (never minutes to earn). Ready: what to
    bill (and, while the month is open, the next code). Not yet: minutes to the next code, or, once the
    month is over, that nothing is billable."""
    if status in ("blocked", "not-eligible"):
        blockers = [f for f in findings if f.severity == "blocker"]
        return blockers[0].message if blockers else "Review the findings."
    nt = next_threshold
    if status == "ready":
        now = f"Bill {_codes(codes)}."
        if nt is None or month_closed:
            return now
        return f"{now} Next: {_minutes(nt)} more for {nt.code}."
    if any(f.rule == rule_ids.ELIGIBILITY_DECEASED_IN_MONTH for f in findings):
        # No time can come after a death: never ask for more minutes.
        if nt is None:
            return "The patient died this month and no CCM code was reached; nothing to bill."
        return f"The patient died this month {_minutes(nt)} short of {nt.code}; nothing to bill."
    if month_closed:
        if nt is None:
            return "The month is over and no CCM code was reached; nothing to bill."
        return f"The month is over {_minutes(nt)} short of {nt.code}; nothing to bill."
    if nt is None:
        return "Log CCM time this month."
    return f"Log {_minutes(nt)} more for {nt.code}."
