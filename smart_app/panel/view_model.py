"""Pure presentation helpers for the readiness panel: no Flask, no I/O, everything from a Verdict."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from fhir_mapping.read_clinical import human_name
from rules.month import Month
from rules.packs import PolicyPack, Track
from rules.verdict import CATEGORIES, Finding, Verdict
from smart_app.readiness import wording
from smart_app.readiness.options import practice_now, system_clock

MAX_COLUMNS = 12  # static/app.css defines .cols-1 … .cols-12 and .span-1 … .span-12
SEVERITY_ORDER: dict[str, int] = {"blocker": 0, "warning": 1, "info": 2}
SEVERITY_LABELS: dict[str, str] = {"blocker": "Blocker", "warning": "Warning", "info": "Note"}
STATUS_HEADLINES: dict[str, str] = wording.STATUS_LABELS
CATEGORY_LABELS: dict[str, str] = {
    "eligibility": "Eligibility",
    "consent": "Consent",
    "care-plan": "Care plan",
    "initiating-visit": "Initiating visit",
    "time": "Time",
    "conflict": "Conflicts",
    "documentation": "Documentation",
}
# Whose minutes each track counts, in the words of the next-step sentence.
TRACK_MINUTES_WORDS: dict[str, str] = {
    "clinical-staff": "clinical-staff",
    "practitioner": "practitioner",
    "complex": "complex-CCM clinical-staff",
}
PREREQUISITES: tuple[tuple[str, str], ...] = (
    ("consent", "Consent on file"),
    ("care-plan", "Care plan in effect"),
    ("initiating-visit", "Initiating visit"),
)
PROGRAM_LABELS: dict[str, str] = {
    "ccm": "CCM", "pcm": "PCM", "rpm": "RPM", "rtm": "RTM", "bhi": "BHI", "tcm": "TCM", "apcm": "APCM",
}


def track_marks(track: Track) -> tuple[tuple[int, str], ...]:
    """(total minutes, code) for a track's base and each add-on unit its bar shows (cap None: one add-on)."""
    steps = track.add_on_cap if track.add_on_cap is not None else 1
    add_ons = ((track.base_minutes + track.add_on_minutes * i, track.add_on) for i in range(1, steps + 1))
    return ((track.base_minutes, track.base), *add_ons)


@dataclass(frozen=True, slots=True)
class Mark:
    minutes: int
    code: str
    reached: bool


@dataclass(frozen=True, slots=True)
class Segment:
    """The stretch of a bar between two thresholds; `span` is its width in grid columns."""

    start: int
    end: int
    code: str
    value: int  # minutes filled inside this stretch
    reached: bool
    span: int

    @property
    def length(self) -> int:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class ProgressBar:
    track: str
    label: str
    minutes: int
    maximum: int
    marks: tuple[Mark, ...]
    active: bool  # the track the verdict billed or is heading for

    @property
    def value(self) -> int:
        """The bar's value, clamped to its maximum (minutes beyond the last mark still show in text)."""
        return min(self.minutes, self.maximum)

    @property
    def percent(self) -> int:
        return round(100 * self.value / self.maximum) if self.maximum else 0

    @property
    def next_mark(self) -> Mark | None:
        return next((m for m in self.marks if not m.reached), None)

    @property
    def segments(self) -> tuple[Segment, ...]:
        """Stretches 0→first mark→second mark…, sized on a grid so no inline style is needed."""
        starts = [0, *(m.minutes for m in self.marks[:-1])]
        lengths = [m.minutes - s for s, m in zip(starts, self.marks, strict=True)]
        unit = math.gcd(*lengths) or 1
        if sum(lengths) // unit > MAX_COLUMNS:  # odd thresholds: equal stretches rather than a huge grid
            unit = 0
        return tuple(
            Segment(
                start=s,
                end=m.minutes,
                code=m.code,
                value=max(0, min(self.minutes, m.minutes) - s),
                reached=m.reached,
                span=length // unit if unit else 1,
            )
            for s, m, length in zip(starts, self.marks, lengths, strict=True)
        )

    @property
    def columns(self) -> int:
        return sum(seg.span for seg in self.segments)

    @property
    def text(self) -> str:
        """The bar's text equivalent (screen readers, no-CSS)."""
        reached = [m for m in self.marks if m.reached]
        head = f"{self.minutes} of {self.maximum} min"
        nxt = self.next_mark
        if nxt is None:
            return f"{head}; every threshold met"
        tail = f"{nxt.minutes - self.minutes} more for {nxt.code} at {nxt.minutes} min"
        return f"{head}; {len(reached)} of {len(self.marks)} thresholds met; {tail}"


@dataclass(frozen=True, slots=True)
class Headline:
    status: str
    title: str
    next_step: str


@dataclass(frozen=True, slots=True)
class Check:
    """One prerequisite row: state is "met", "warning" or "missing"."""

    category: str
    label: str
    state: str
    findings: tuple[Finding, ...]

    @property
    def symbol(self) -> str:
        return {"met": "✔", "warning": "⚠", "missing": "✖"}[self.state]

    @property
    def state_text(self) -> str:
        return {"met": "Met", "warning": "Met, with a warning", "missing": "Missing"}[self.state]


def track_specs(pack: PolicyPack) -> tuple[Track, ...]:
    """The CCM tracks of a policy pack with their thresholds (staff 20/40/60, practitioner 30/60/90, ...)."""
    return pack.tracks


def code_labels(pack: PolicyPack) -> dict[str, str]:
    """Our own short label for each code of the pack."""
    return {code: spec.label for code, spec in pack.codes.items()}


def progress_bars(verdict: Verdict, specs: Sequence[Track]) -> tuple[ProgressBar, ...]:
    """One bar per track; the complex track only when the verdict is on it or heading for it."""
    heading = verdict.next_threshold.track if verdict.next_threshold else None
    bars: list[ProgressBar] = []
    for spec in specs:
        active = spec.id in (verdict.track, heading)
        if spec.id == "complex" and not active:
            continue
        minutes = int(getattr(verdict.minutes, spec.minutes, 0) or 0)
        marks = tuple(Mark(total, code, minutes >= total) for total, code in track_marks(spec))
        bars.append(
            ProgressBar(
                track=spec.id,
                label=spec.label,
                minutes=minutes,
                maximum=marks[-1].minutes,
                marks=marks,
                active=active,
            )
        )
    return tuple(bars)


format_money = wording.format_money  # one money format for every face


def practice_today(tz_name: str, now: datetime | None = None) -> date:
    """Today's date in the practice's time zone (`now` is injectable for tests)."""
    return practice_now(tz_name, (lambda: now) if now else system_clock).date()


def days_left(month: Month | str, today: date) -> int:
    """Days left in `month` counting `today` (0 once the month is over)."""
    m = Month.parse(month) if isinstance(month, str) else month
    return m.days_left(today)


def days_left_text(days: int, month: Month, today: date) -> str:
    if days == 0:
        return "the month is over"
    if today < month.first_day:
        return "the month has not started"
    return "1 day left" if days == 1 else f"{days} days left"


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    """Blockers first, then warnings, then notes; within a severity, by category order then rule id."""
    order = {c: i for i, c in enumerate(CATEGORIES)}
    return sorted(
        findings,
        key=lambda f: (SEVERITY_ORDER.get(f.severity, 9), order.get(f.category, 99), f.rule),
    )


def group_findings(findings: Iterable[Finding]) -> list[tuple[str, list[Finding]]]:
    """(severity, findings) groups, most severe first, each group sorted; empty groups left out."""
    groups: dict[str, list[Finding]] = {}
    for f in sort_findings(findings):
        groups.setdefault(f.severity, []).append(f)
    return list(groups.items())


def next_step(verdict: Verdict, today: date) -> str:
    """The single most useful next step for the clinician, in one sentence."""
    month = Month.parse(verdict.month)
    over = today > month.last_day
    days = days_left_text(days_left(month, today), month, today)
    nt = verdict.next_threshold
    if verdict.status in ("blocked", "not-eligible"):
        blockers = sort_findings(verdict.blockers)
        return blockers[0].message if blockers else "Review the findings below."
    more = ""
    if nt is not None:
        who = TRACK_MINUTES_WORDS.get(nt.track, nt.track or "CCM")
        unit = "minute" if nt.minutes_needed == 1 else "minutes"
        more = (f"{nt.minutes_needed} {who} {unit} short of {nt.code}" if over
                else f"{nt.minutes_needed} more {who} {unit} for {nt.code}")
    if verdict.status == "ready":
        billed = " + ".join(f"{c.code} ×{c.units}" if c.units > 1 else c.code for c in verdict.codes)
        now = f"Bill {billed} ({format_money(verdict.payment_total)})"
        return f"{now}." if not more or over else f"{now}. Next: {more}; {days}."
    if more:
        return f"{more}; {days}."
    return f"No CCM time counted; {days}." if over else f"Log CCM time this month; {days}."


def headline(verdict: Verdict, today: date) -> Headline:
    return Headline(
        status=verdict.status,
        title=STATUS_HEADLINES.get(verdict.status, verdict.status),
        next_step=next_step(verdict, today),
    )


def prerequisites(verdict: Verdict) -> tuple[Check, ...]:
    """Consent, care plan and initiating visit: missing on a blocker, warning on a warning, else met."""
    checks: list[Check] = []
    for category, label in PREREQUISITES:
        found = tuple(sort_findings(verdict.by_category(category)))
        severities = {f.severity for f in found}
        state = "missing" if "blocker" in severities else "warning" if "warning" in severities else "met"
        checks.append(Check(category, label, state, found))
    return tuple(checks)


def distinct_conditions(verdict: Verdict) -> int:
    """How many distinct chronic conditions the verdict counted (the CCM minimum is 2)."""
    return len({c.condition_key for c in verdict.chronic_conditions})


def other_program_minutes(verdict: Verdict) -> list[tuple[str, int]]:
    """Minutes logged under other programs this month (shown, never counted toward CCM)."""
    return [
        (PROGRAM_LABELS.get(p, p.upper()), m) for p, m in verdict.minutes.by_program if p != "ccm" and m
    ]


month_label = wording.month_label


@dataclass(frozen=True, slots=True)
class Banner:
    name: str
    birth_date: str
    gender: str
    id: str


def patient_banner(patient: dict[str, Any] | None, patient_id: str) -> Banner:
    """Name, birth date, gender and id from a Patient resource (read leniently; blanks when absent)."""
    p = patient if isinstance(patient, dict) else {}
    birth = p.get("birthDate") if isinstance(p.get("birthDate"), str) else ""
    gender = p.get("gender") if isinstance(p.get("gender"), str) else ""
    return Banner(
        name=human_name(p.get("name")) or "Name not recorded",
        birth_date=birth or "not recorded",
        gender=gender or "not recorded",
        id=str(p.get("id") or patient_id),
    )
