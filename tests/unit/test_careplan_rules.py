"""The two care-plan warnings of issue 7: not shared with the patient, not reviewed in 12 months."""

from __future__ import annotations

from dataclasses import replace

from tests.support.facts import at, care_plan, ev, finding, ready_facts, rules_of


def test_not_shared_is_a_warning_and_does_not_block() -> None:
    v = ev(ready_facts(care_plans=(replace(care_plan(), shared_with_patient_at=None),)))
    f = finding(v, "care-plan.not-shared")
    assert f.severity == "warning" and v.status == "ready"
    assert "S1" in f.citation and "copy" in f.message


def test_shared_plan_has_no_warning() -> None:
    assert "care-plan.not-shared" not in rules_of(ev(ready_facts()))


def test_review_overdue_after_12_months() -> None:
    plan = replace(
        care_plan(start="2024-06-01T00:00:00+00:00"), last_reviewed=at("2025-03-31T12:00:00+00:00")
    )
    v = ev(ready_facts(care_plans=(plan,)), "2026-03")
    f = finding(v, "care-plan.review-overdue")
    assert f.severity == "warning" and v.status == "ready"
    assert "2025-03-31" in f.message and f.evidence == ("CarePlan/cp1",)
    assert "12 months is this app's threshold" not in f.message  # the note lives in the citation object


def test_review_within_12_months_is_fine() -> None:
    plan = replace(
        care_plan(start="2024-06-01T00:00:00+00:00"), last_reviewed=at("2025-04-01T00:00:00+00:00")
    )
    assert "care-plan.review-overdue" not in rules_of(ev(ready_facts(care_plans=(plan,)), "2026-03"))


def test_review_falls_back_to_creation_then_start() -> None:
    old = care_plan(start="2024-01-05T00:00:00+00:00")
    assert "care-plan.review-overdue" in rules_of(ev(ready_facts(care_plans=(old,)), "2026-03"))
    recreated = replace(old, created=at("2026-01-10T00:00:00+00:00"))
    assert "care-plan.review-overdue" not in rules_of(ev(ready_facts(care_plans=(recreated,)), "2026-03"))


def test_the_newest_review_of_several_plans_counts() -> None:
    stale = replace(
        care_plan("a", start="2023-01-01T00:00:00+00:00"), last_reviewed=at("2023-02-01T00:00:00+00:00")
    )
    fresh = replace(
        care_plan("b", start="2023-01-01T00:00:00+00:00"), last_reviewed=at("2026-02-01T00:00:00+00:00")
    )
    assert "care-plan.review-overdue" not in rules_of(ev(ready_facts(care_plans=(stale, fresh)), "2026-03"))


def test_missing_plan_gives_only_the_blocker() -> None:
    v = ev(ready_facts(care_plans=()))
    assert {r for r in rules_of(v) if r.startswith("care-plan.")} == {"care-plan.missing"}
