"""A CCM care-plan draft and its checks (pure): what the editor collects before anything is written.

The sections follow the elements CMS lists for the comprehensive care plan (cms-rules.md section 3.4, sources
S1, S3, S24). Every check returns a readable message tied to the form field it is about; nothing here raises
on bad input.
"""

from __future__ import annotations

import re
from dataclasses import field
from datetime import date
from decimal import Decimal, InvalidOperation

from rules.record_type import record

# Free-text sections, in the order CMS lists the elements. (Problems, goals and interventions are structured.)
TEXT_SECTIONS: tuple[tuple[str, str, str], ...] = (
    (
        "prognosis",
        "Expected outcome and prognosis",
        "What the team and the patient expect over the next year.",
    ),
    ("symptoms", "Symptom management", "Symptoms to watch, what to do, and when to call."),
    ("medications", "Medication management", "Current medicines, allergies, reconciliation and adherence."),
    ("functional", "Functional and cognitive assessment", "Daily activities, mobility, memory, mood."),
    ("caregiver", "Caregiver assessment", "Who helps at home and what support they need (or: none)."),
    ("environment", "Environmental evaluation", "Home safety, transport, food, access to care."),
    (
        "community",
        "Community resources and coordination with other providers",
        "Specialists, home health, pharmacy, community programmes.",
    ),
    (
        "review",
        "Review schedule",
        "When the plan is reviewed and revised (e.g. every 6 months and after a hospital stay).",
    ),
)
SECTION_LABELS: dict[str, str] = {
    "problems": "Problem list",
    **{code: label for code, label, _ in TEXT_SECTIONS},
    "goals": "Measurable goals",
    "interventions": "Planned interventions and who is responsible",
}
MAX_TEXT = 4000
_TARGET = re.compile(r"^\s*(<=|>=|≤|≥|<|>)?\s*(\d+(?:[.,]\d+)?)\s*(.*?)\s*$")
_COMPARATOR = {"≤": "<=", "≥": ">="}


@record
class GoalDraft:
    """One measurable goal: what, measured how, which target, by when."""

    description: str
    measure: str  # what is measured, e.g. "HbA1c"
    target: str  # e.g. "< 7 %", "150 min/week", "no ED visits"
    due: date | None
    goal_id: str | None = None  # an existing Goal being revised
    measure_code: str = ""  # optional "system|code" (e.g. LOINC) from a template
    source: str = ""  # where a suggestion came from (template + citation); "" when typed by the user


@record
class ActivityDraft:
    """One planned intervention and who is responsible for it."""

    description: str
    performer: str  # a reference ("Practitioner/1", "Patient/2", "CareTeam/3") or a role in words
    source: str = ""


@record
class CarePlanDraft:
    """Everything the editor collected for one patient's CCM care plan."""

    patient_id: str
    conditions: tuple[str, ...]  # "Condition/..." the plan addresses (the problem list)
    sections: dict[str, str]  # TEXT_SECTIONS code -> text
    goals: tuple[GoalDraft, ...]
    activities: tuple[ActivityDraft, ...]
    author: str  # the billing practitioner, "Practitioner/..."
    period_start: date
    plan_id: str | None = None  # set when revising
    version: str | None = None  # the versionId the user started from (If-Match)
    problem_labels: dict[str, str] = field(default_factory=dict)  # Condition ref -> readable name


@record
class Problem:
    """A readable message about one form field."""

    field: str
    message: str


def parse_target(text: str) -> tuple[str | None, Decimal, str] | None:
    """'< 7 %' -> ('<', Decimal('7'), '%'); None when the target is not a number (then it stays text)."""
    m = _TARGET.match(text or "")
    if not m:
        return None
    comparator = _COMPARATOR.get(m.group(1) or "", m.group(1))
    try:
        value = Decimal(m.group(2).replace(",", "."))
    except InvalidOperation:
        return None
    return comparator, value, m.group(3)


def validate(draft: CarePlanDraft, today: date) -> tuple[Problem, ...]:
    """Every problem with `draft`, in form order; () when it can be written."""
    out: list[Problem] = []
    if not draft.conditions:
        out.append(
            Problem("problems", "Problem list: choose at least one chronic condition the plan addresses.")
        )
    if not draft.author.startswith(("Practitioner/", "PractitionerRole/")):
        out.append(
            Problem("author", "Choose the billing practitioner who establishes the plan (the author).")
        )
    for code, label, _ in TEXT_SECTIONS:
        text = (draft.sections.get(code) or "").strip()
        if not text:
            out.append(
                Problem(
                    code,
                    f"{label}: this section is empty. Write what applies, or say why it does not apply.",
                )
            )
        elif len(text) > MAX_TEXT:
            out.append(Problem(code, f"{label}: keep it under {MAX_TEXT} characters."))
    if not draft.goals:
        out.append(Problem("goals", "Measurable goals: add at least one goal with a measure and a target."))
    for i, goal in enumerate(draft.goals, 1):
        name = f"Goal {i}" + (
            f" (\u201c{goal.description.strip()[:40]}\u201d)" if goal.description.strip() else ""
        )
        if not goal.description.strip():
            out.append(Problem(f"goal-{i}-description", f"Goal {i}: describe the goal."))
        if not goal.measure.strip():
            out.append(
                Problem(
                    f"goal-{i}-measure",
                    f"{name}: a goal needs a measure (what is measured, e.g. "
                    "HbA1c, blood pressure, steps per day).",
                )
            )
        if not goal.target.strip():
            out.append(Problem(f"goal-{i}-target", f'{name}: a goal needs a target value (e.g. "< 7 %").'))
        if goal.due is None:
            out.append(Problem(f"goal-{i}-due", f"{name}: give the date by which the target should be met."))
        elif goal.due < today:
            out.append(
                Problem(
                    f"goal-{i}-due",
                    f"{name}: the target date {goal.due.isoformat()} is in the past; "
                    f"choose {today.isoformat()} or later.",
                )
            )
    if not draft.activities:
        out.append(
            Problem("interventions", "Planned interventions: add at least one, with who is responsible.")
        )
    for i, act in enumerate(draft.activities, 1):
        if not act.description.strip():
            out.append(Problem(f"activity-{i}-description", f"Intervention {i}: describe what will be done."))
        if not act.performer.strip():
            out.append(Problem(f"activity-{i}-performer", f"Intervention {i}: say who is responsible."))
    if draft.period_start > today:
        out.append(
            Problem("period_start", "The plan cannot start in the future; use today or an earlier date.")
        )
    return tuple(out)
