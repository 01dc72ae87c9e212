"""Care plan and initiating visit rules."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.support.facts import (
    DOC,
    OTHER_DOC,
    care_plan,
    consent,
    ev,
    finding,
    ready_facts,
    rules_of,
    visit,
)


def test_no_care_plan_blocks() -> None:
    v = ev(ready_facts(care_plans=()))
    assert v.status == "blocked"
    assert "No CCM care plan is recorded" in finding(v, "care-plan.missing").message


@pytest.mark.parametrize(
    "plan",
    [
        care_plan(status="draft"),
        care_plan(status="revoked"),
        care_plan(end="2026-02-27T00:00:00"),
        care_plan(start="2026-04-01T00:00:00"),
        replace(care_plan(), programs=("pcm",)),
    ],
)
def test_care_plan_not_in_effect_blocks(plan) -> None:  # type: ignore[no-untyped-def]
    assert "care-plan.missing" in rules_of(ev(ready_facts(care_plans=(plan,))))


@pytest.mark.parametrize(
    "plan",
    [
        care_plan(start="2026-03-31T10:00:00"),
        care_plan(start="2024-01-01T00:00:00"),
        care_plan(end="2026-04-01T00:00:00"),
    ],
)
def test_care_plan_in_effect_at_the_month_end_counts(plan) -> None:  # type: ignore[no-untyped-def]
    assert "care-plan.missing" not in rules_of(ev(ready_facts(care_plans=(plan,))))


@pytest.mark.parametrize(
    "plan",
    [
        care_plan(end="2026-03-01T10:00:00"),  # ended in the month: the plan does not cover the month
        replace(care_plan(), intent="proposal"),  # a CDS proposal is not an established plan
        replace(care_plan(), intent="option"),
    ],
)
def test_plan_must_be_established_and_cover_the_month(plan) -> None:  # type: ignore[no-untyped-def]
    """cms-rules.md §3.4: the record shows the plan is in effect for every billed month."""
    assert "care-plan.missing" in rules_of(ev(ready_facts(care_plans=(plan,))))


def test_plan_not_shared_is_information() -> None:
    v = ev(ready_facts(care_plans=(replace(care_plan(), shared_with_patient_at=None),)))
    assert v.status == "ready" and finding(v, "care-plan.not-shared").severity == "warning"


def test_no_visit_blocks() -> None:
    v = ev(ready_facts(visits=()))
    f = finding(v, "initiating-visit.missing")
    assert v.status == "blocked" and "No qualifying visit" in f.message


def test_visit_by_another_practitioner_does_not_count() -> None:
    v = ev(ready_facts(visits=(visit(participants=(OTHER_DOC,)),)))
    assert "not by the billing practitioner" in finding(v, "initiating-visit.missing").message


@pytest.mark.parametrize(
    ("start", "ok"),
    [
        ("2025-01-06T10:00:00", True),  # just inside 12 months before consent (2026-01-05T10:00Z)
        ("2025-01-05T09:00:00", False),  # just over 12 months
        ("2026-01-05T15:00:00", True),  # same day as consent, later (consent taken at the visit)
        ("2026-01-07T10:00:00", False),  # after CCM started
    ],
)
def test_visit_window_is_twelve_months_before_consent(start: str, ok: bool) -> None:
    v = ev(ready_facts(visits=(visit(start=start),)))
    assert ("initiating-visit.missing" not in rules_of(v)) is ok


@pytest.mark.parametrize(
    ("code", "ok"),
    [("99211", False), ("99212", True), ("99205", True), ("G0439", True), ("G0402", True), ("99490", False)],
)
def test_qualifying_visit_codes(code: str, ok: bool) -> None:
    v = ev(ready_facts(visits=(visit(code=code),)))
    assert ("initiating-visit.missing" not in rules_of(v)) is ok


def test_unfinished_visit_does_not_count() -> None:
    v = ev(ready_facts(visits=(replace(visit(), status="planned"),)))
    assert "initiating-visit.missing" in rules_of(v)


def test_visit_long_ago_but_consent_recent() -> None:
    facts = ready_facts(
        consents=(consent(obtained="2026-03-02T10:00:00"),), visits=(visit(start="2024-12-01T10:00:00"),)
    )
    assert "outside that window" in finding(ev(facts), "initiating-visit.missing").message
    assert ev(facts, billing_practitioner=DOC).status == "blocked"
