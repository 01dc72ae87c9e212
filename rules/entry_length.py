"""A CCM time entry longer than one sitting of work is not counted (a period spanning hours or days is an
episode or a container, not minutes): the reading that cannot turn a long period into billable minutes.

The bound is the capture form's own limit (`entry_validation.MAX_MINUTES`, 4 hours); see the README,
"Rules: decisions worth knowing".
"""

from __future__ import annotations

import math
from dataclasses import replace

from rules import rule_ids
from rules.entry_validation import MAX_MINUTES
from rules.minutes import FINISHED, program_of
from rules.packs import Citation
from rules.patient_month import PatientMonth
from rules.records import TimeEntry
from rules.verdict import Finding

CITE_REAL_TIME = Citation("CMS MLN909188; CMS CCM FAQ; Codapedia (CMS FAQ)", "3.6", ("S1", "S2", "S21"), "H")


def too_long(pm: PatientMonth) -> tuple[TimeEntry, ...]:
    """The month's finished CCM entries each over MAX_MINUTES."""
    return tuple(
        e
        for e in pm.facts.time_entries
        if (e.status or "").lower() == FINISHED
        and _minutes(e) > MAX_MINUTES
        and pm.overlaps(e.start, e.end)
        and program_of(pm, e) == "ccm"
    )


def _minutes(entry: TimeEntry) -> float:
    """The entry's minutes; 0 for nonsense (not a number, infinite), which the minute count ignores too."""
    try:
        minutes = float(entry.minutes)
    except (TypeError, ValueError):
        return 0.0
    return minutes if math.isfinite(minutes) else 0.0


def without(pm: PatientMonth, entries: tuple[TimeEntry, ...]) -> PatientMonth:
    """`pm` without `entries` among its time entries (the same object when there are none)."""
    if not entries:
        return pm
    dropped = {e.id for e in entries}
    kept = tuple(e for e in pm.facts.time_entries if e.id not in dropped)
    return replace(pm, facts=replace(pm.facts, time_entries=kept))


def check(entries: tuple[TimeEntry, ...]) -> tuple[Finding, ...]:
    """rule time.implausible-entry: warn that these entries were not counted, and why."""
    if not entries:
        return ()
    longest = max(int(_minutes(e)) for e in entries)
    many = f"{len(entries)} CCM time entries each" if len(entries) > 1 else "One CCM time entry"
    return (
        Finding(
            rule_ids.TIME_IMPLAUSIBLE_ENTRY,
            "time",
            "warning",
            f"{many} over {MAX_MINUTES // 60} hours (the longest: {longest} min) are not counted: a period "
            "that long is an episode, not minutes of work. Record each activity with its own minutes.",
            str(CITE_REAL_TIME),
            tuple(e.id for e in entries),
        ),
    )
