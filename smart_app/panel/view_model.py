"""Pure presentation helpers for the readiness panel: no Flask, no I/O, everything from a Verdict."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from fhir_mapping.read_clinical import human_name
from rules import rule_ids
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


def track_marks(track: Track, reach: int = 0) -> tuple[tuple[int, str], ...]:
    """(total minutes, code) for a track's base and each add-on unit its bar shows (cap None: one add-on,
    or as many as it takes to show the mark at `reach` minutes, so the bar never ends before the headline's
    next threshold)."""
    steps = track.add_on_cap if track.add_on_cap is not None else 1
    if track.add_on_cap is None and track.add_on_minutes > 0 and reach > track.base_minutes:
        steps = max(steps, -(-(reach - track.base_minutes) // track.add_on_minutes))
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
    quiet: str = ""  # blocked, not eligible or a closed month: why the bar talks of minutes only

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
        if self.quiet:
            return f"{head}; {self.quiet}"
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


def track_specs(pack: PolicyPack) -> tuple[Track, ...]:
    """The CCM tracks of a policy pack with their thresholds (staff 20/40/60, practitioner 30/60/90, ...)."""
    return pack.tracks


def code_labels(pack: PolicyPack) -> dict[str, str]:
    """Our own short label for each code of the pack."""
    return {code: spec.label for code, spec in pack.codes.items()}


def progress_bars(verdict: Verdict, specs: Sequence[Track]) -> tuple[ProgressBar, ...]:
    """One bar per track; the complex track only when the verdict is on it or heading for it."""
    nt = verdict.next_threshold
    heading = nt.track if nt else None
    quiet = (
        "nothing is billable while blocked" if verdict.status in ("blocked", "not-eligible")
        else "the month is over" if getattr(verdict, "month_closed", False) and verdict.status != "ready"
        else ""
    )
    bars: list[ProgressBar] = []
    for spec in specs:
        active = spec.id in (verdict.track, heading)
        if spec.id == "complex" and not active:
            continue
        minutes = int(getattr(verdict.minutes, spec.minutes, 0) or 0)
        reach = 0
        if nt is not None and nt.track == spec.id:
            reach = nt.threshold_total or minutes + nt.minutes_needed
        marks = tuple(Mark(total, code, minutes >= total) for total, code in track_marks(spec, reach))
        bars.append(
            ProgressBar(
                track=spec.id,
                label=spec.label,
                minutes=minutes,
                maximum=marks[-1].minutes,
                marks=marks,
                active=active,
                quiet=quiet,
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
    """The single next step: the verdict's own (rules/next_step.py), so every face says the same thing;
    a verdict built without one (older callers, tests) gets the same sentence computed here."""
    carried = getattr(verdict, "next_step", "")
    if carried:
        return str(carried)
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
        title=wording.status_label(
            verdict.status,
            bool(getattr(verdict, "month_closed", False)) or today > Month.parse(verdict.month).last_day,
        ),
        next_step=next_step(verdict, today),
    )


@dataclass(frozen=True, slots=True)
class Action:
    """What to do about one checklist line, in place: a link, or the billing-practitioner chooser."""

    kind: str  # "link" | "choose-practitioner" | "advice"
    label: str
    endpoint: str = ""  # Flask endpoint for links
    anchor_id: str = ""
    text: str = ""


EMPTY_PLAN_RULE = "care-plan.empty"  # a face-level warning (the plan on file has no content)
CONSENT_ACTION_RULES = frozenset({*rule_ids.NO_CONSENT, rule_ids.CONSENT_SUPERSEDED,
                                  rule_ids.CONSENT_DISCLOSURES_INCOMPLETE, rule_ids.CONSENT_UNDATED})


def _has_content(plan: dict[str, Any]) -> bool:
    return any(plan.get(k) for k in ("activity", "goal", "addresses", "description", "note"))


def empty_plan_finding(resources: Iterable[Any], verdict: Verdict) -> Finding | None:
    """A warning when every CCM care plan the verdict relied on is empty (no goals, activities, problems)."""
    if any(f.rule == rule_ids.CARE_PLAN_MISSING for f in verdict.findings):
        return None
    plans = [
        r for r in resources
        if isinstance(r, dict) and r.get("resourceType") == "CarePlan" and r.get("status") == "active"
        and any(c.get("code") == "ccm" for cat in r.get("category") or () if isinstance(cat, dict)
                for c in cat.get("coding") or () if isinstance(c, dict))
    ]
    if not plans or any(_has_content(p) for p in plans):
        return None
    return Finding(
        EMPTY_PLAN_RULE, "care-plan", "warning",
        "The care plan on file is empty: it lists no problems, goals or interventions. Review it and fill "
        "it in; an empty plan does not meet CMS's comprehensive care plan requirement.",
        "CMS MLN909188; cms-rules.md §3.4 [S1,S3]",
        tuple(f"CarePlan/{p.get('id')}" for p in plans),
    )


def _actions(category: str, rules: set[str]) -> tuple[Action, ...]:
    out: list[Action] = []
    if category == "consent":
        if rules & CONSENT_ACTION_RULES or not rules:
            label = "Record consent" if rules & CONSENT_ACTION_RULES else "Record a consent change"
            out.append(Action("link", label, "timelog.new_consent", "consent-link"))
        if rule_ids.BILLING_PRACTITIONER_UNKNOWN in rules:
            out.append(Action("choose-practitioner", "Choose the billing practitioner"))
    elif category == "care-plan":
        label = "Build care plan" if rule_ids.CARE_PLAN_MISSING in rules else "Review care plan"
        out.append(Action("link", label, "careplan.editor", "care-plan-link"))
    elif category == "initiating-visit" and rule_ids.INITIATING_VISIT_MISSING in rules:
        out.append(Action("link", "Record the initiating visit", "timelog.new_visit",
                          "initiating-visit-link"))
        out.append(Action(
            "advice", "No qualifying visit by the billing practitioner yet",
            anchor_id="initiating-visit-action",
            text="Book a face-to-face visit (E/M level 2-5, AWV or IPPE) with the billing practitioner, "
                 "discuss CCM during it, then record it here; this line turns green once it is recorded.",
        ))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class CheckLine:
    """One prerequisite row: state is "met", "warning" or "missing", with its actions."""

    category: str
    label: str
    state: str
    findings: tuple[Finding, ...]
    actions: tuple[Action, ...] = ()

    @property
    def symbol(self) -> str:
        return {"met": "✔", "warning": "⚠", "missing": "✖"}[self.state]

    @property
    def state_text(self) -> str:
        return {"met": "Met", "warning": "Met, with a warning", "missing": "Missing"}[self.state]


def prerequisites(verdict: Verdict, resources: Iterable[Any] = ()) -> tuple[CheckLine, ...]:
    """Consent, care plan and initiating visit: missing on a blocker, warning on a warning, else met;
    each with the action that fixes it (an empty care plan on file is a warning, never "Met")."""
    extra = empty_plan_finding(resources, verdict)
    checks: list[CheckLine] = []
    for category, label in PREREQUISITES:
        found = tuple(sort_findings([
            *verdict.by_category(category), *([extra] if extra and extra.category == category else []),
        ]))
        severities = {f.severity for f in found}
        state = "missing" if "blocker" in severities else "warning" if "warning" in severities else "met"
        checks.append(CheckLine(category, label, state, found, _actions(category, {f.rule for f in found})))
    return tuple(checks)


def distinct_conditions(verdict: Verdict) -> int:
    """How many distinct chronic conditions the verdict counted (the CCM minimum is 2)."""
    carried = getattr(verdict, "distinct_conditions", 0)
    return int(carried) if carried else len({c.condition_key for c in verdict.chronic_conditions})


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
