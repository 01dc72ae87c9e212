"""One voice on the panel: bars agree with the headline, nothing about earning codes while blocked, every
checklist line carries its action, an empty care plan on file is a warning."""

from __future__ import annotations

import pytest

from rules import rule_ids
from rules.packs import Track, load_pack
from rules.verdict import Minutes, NextThreshold
from smart_app.panel import view_model as pv
from tests.unit.test_panel_view import finding, verdict


@pytest.fixture(scope="module")
def specs() -> tuple[Track, ...]:
    return pv.track_specs(load_pack("cms-pfs-2026"))


def test_each_bar_names_the_same_next_threshold_as_the_headline(specs: tuple[Track, ...]) -> None:
    for track in specs:
        for total, code in pv.track_marks(track):
            have = total - 5
            nxt = NextThreshold(code, 5, track.id, total)
            minutes = Minutes(have, have) if track.minutes == "billing_practitioner" else Minutes(have, 0)
            v = verdict(status="not-yet", track=track.id, minutes=minutes, next_threshold=nxt)
            bar = {b.track: b for b in pv.progress_bars(v, specs)}[track.id]
            assert "every threshold met" not in bar.text
            assert f"5 more for {code} at {total} min" in bar.text, bar.text


def test_blocked_bars_talk_of_minutes_only(specs: tuple[Track, ...]) -> None:
    v = verdict(status="blocked", findings=(finding(rule_ids.CONSENT_MISSING),))
    for bar in pv.progress_bars(v, specs):
        assert "more for" not in bar.text and "nothing is billable" in bar.text


def test_checklist_lines_carry_their_actions() -> None:
    v = verdict(
        status="blocked",
        findings=(
            finding(rule_ids.CONSENT_MISSING),
            finding(rule_ids.BILLING_PRACTITIONER_UNKNOWN),
            finding(rule_ids.CARE_PLAN_MISSING, category="care-plan"),
            finding(rule_ids.INITIATING_VISIT_MISSING, category="initiating-visit"),
        ),
    )
    actions = {c.category: [a.kind + ":" + a.label for a in c.actions] for c in pv.prerequisites(v)}
    assert actions["consent"] == [
        "link:Record consent", "choose-practitioner:Choose the billing practitioner",
    ]
    assert actions["care-plan"] == ["link:Build care plan"]
    assert actions["initiating-visit"] == [
        "link:Record the initiating visit",
        "advice:No qualifying visit by the billing practitioner yet",
    ]


def test_an_empty_care_plan_on_file_is_a_warning_not_met() -> None:
    plan = {"resourceType": "CarePlan", "id": "cp", "status": "active",
            "category": [{"coding": [{"code": "ccm"}]}]}
    v = verdict(status="ready")
    empty = {c.category: c for c in pv.prerequisites(v, [plan])}["care-plan"]
    assert empty.state == "warning" and empty.findings[0].rule == pv.EMPTY_PLAN_RULE
    assert [a.label for a in empty.actions] == ["Review care plan"]
    full = {c.category: c for c in pv.prerequisites(v, [{**plan, "goal": [{"reference": "Goal/g"}]}])}
    assert full["care-plan"].state == "met"
