"""rules.careplan_validation: clear messages for bad care-plan input."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal

import pytest

from rules.careplan_validation import (
    TEXT_SECTIONS,
    ActivityDraft,
    CarePlanDraft,
    GoalDraft,
    parse_target,
    validate,
)

TODAY = date(2026, 11, 23)


def good() -> CarePlanDraft:
    return CarePlanDraft(
        patient_id="p1",
        conditions=("Condition/c1",),
        sections={code: f"{label} text" for code, label, _ in TEXT_SECTIONS},
        goals=(GoalDraft("Blood sugar in range", "HbA1c", "< 7 %", date(2027, 5, 1)),),
        activities=(ActivityDraft("Monthly call", "Practitioner/dr"),),
        author="Practitioner/dr",
        period_start=TODAY,
    )


def messages(draft: CarePlanDraft) -> dict[str, str]:
    return {p.field: p.message for p in validate(draft, TODAY)}


def test_a_complete_plan_has_no_problems() -> None:
    assert validate(good(), TODAY) == ()


def test_goal_without_a_measure() -> None:
    d = replace(good(), goals=(GoalDraft("Walk more", "", "6000 steps", date(2027, 1, 1)),))
    assert messages(d) == {
        "goal-1-measure": "Goal 1 (\u201cWalk more\u201d): a goal needs a measure (what is "
        "measured, e.g. HbA1c, blood pressure, steps per day)."
    }


def test_target_date_in_the_past_names_the_date() -> None:
    d = replace(good(), goals=(GoalDraft("A1c", "HbA1c", "< 7 %", date(2026, 11, 22)),))
    msg = messages(d)["goal-1-due"]
    assert "2026-11-22 is in the past" in msg and "2026-11-23 or later" in msg


def test_target_date_today_is_fine() -> None:
    d = replace(good(), goals=(GoalDraft("A1c", "HbA1c", "< 7 %", TODAY),))
    assert validate(d, TODAY) == ()


@pytest.mark.parametrize("code", [c for c, _, _ in TEXT_SECTIONS])
def test_every_empty_required_section_is_named(code: str) -> None:
    d = replace(good(), sections={**good().sections, code: "   "})
    label = dict((c, lbl) for c, lbl, _ in TEXT_SECTIONS)[code]
    assert messages(d) == {
        code: f"{label}: this section is empty. Write what applies, or say why it does not apply."
    }


def test_structured_sections_are_required() -> None:
    d = replace(good(), conditions=(), goals=(), activities=(), author="")
    assert set(messages(d)) == {"problems", "goals", "interventions", "author"}


def test_intervention_needs_who_is_responsible() -> None:
    d = replace(good(), activities=(ActivityDraft("Call monthly", " "),))
    assert messages(d) == {"activity-1-performer": "Intervention 1: say who is responsible."}


def test_goal_needs_target_and_due_date() -> None:
    d = replace(good(), goals=(GoalDraft("x", "y", "", None),))
    assert set(messages(d)) == {"goal-1-target", "goal-1-due"}


def test_plan_cannot_start_in_the_future() -> None:
    assert set(messages(replace(good(), period_start=date(2026, 12, 1)))) == {"period_start"}


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("< 7 %", ("<", Decimal("7"), "%")),
        ("<=130 mmHg", ("<=", Decimal("130"), "mmHg")),
        ("≥ 6000 steps", (">=", Decimal("6000"), "steps")),
        ("7,5", (None, Decimal("7.5"), "")),
        ("no ED visits", None),
        ("", None),
    ],
)
def test_parse_target(text: str, parsed: object) -> None:
    assert parse_target(text) == parsed
