"""smart_app.careplan.views: form parsing keeps what was typed; the draft store round-trips drafts."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from werkzeug.datastructures import MultiDict

from smart_app.careplan.views import DraftStore, draft_from_form, draft_from_json, draft_to_json
from smart_app.context import LaunchContext

CTX = LaunchContext(mode="open", fhir_base="http://127.0.0.1:1/fhir", patient_id="p1")
TODAY = date(2026, 11, 23)


def form(**extra: str) -> MultiDict[str, str]:
    data = MultiDict(
        [("problems", "Condition/c1"), ("problems", "Observation/x"), ("problems", "Condition/c1")]
    )
    base = {
        "goal_count": "3",
        "goal-1-description": "A1c",
        "goal-1-measure": "HbA1c",
        "goal-1-target": "< 7 %",
        "goal-1-due": "2027-01-01",
        "goal-1-source": "Template: ADA",
        "goal-2-description": "",
        "goal-3-description": "Walk",
        "goal-3-due": "next spring",
        "activity_count": "2",
        "activity-1-description": "Call",
        "activity-1-performer": "Practitioner/rn",
        "activity-2-description": "Old",
        "activity-2-performer": "Patient",
        "activity-2-remove": "1",
        "sec-prognosis": "Good\r\nprognosis",
        "author": "Practitioner/dr",
        "period_start": "2026-11-01",
        "plan_key": "k1",
        "plan_id": "cp1",
        "version": "4",
    }
    base.update(extra)
    for k, v in base.items():
        data[k] = v
    return data


def test_form_keeps_typed_rows_and_reports_unreadable_dates() -> None:
    draft, key, problems = draft_from_form(form(), CTX, TODAY)
    assert key == "k1" and draft.plan_id == "cp1" and draft.version == "4"
    assert draft.conditions == ("Condition/c1",)
    assert [(g.description, g.due) for g in draft.goals] == [("A1c", date(2027, 1, 1)), ("Walk", None)]
    assert draft.goals[0].source == "Template: ADA"
    assert [a.description for a in draft.activities] == ["Call"]
    assert draft.sections["prognosis"] == "Good\nprognosis"
    assert [p.field for p in problems] == ["goal-2-due"]
    assert "\u201cnext spring\u201d is not a date" in problems[0].message


def test_removed_goal_is_dropped() -> None:
    draft, _, _ = draft_from_form(form(**{"goal-1-remove": "1"}), CTX, TODAY)
    assert [g.description for g in draft.goals] == ["Walk"]


def test_draft_store_round_trip(tmp_path: Path) -> None:
    draft, key, _ = draft_from_form(form(), CTX, TODAY)
    store = DraftStore(tmp_path / "d.sqlite3")
    store.put("x", draft_to_json(draft, key), "pending", "server down")
    payload, state, error, _ = store.get("x") or ({}, "", "", 0.0)
    assert (state, error) == ("pending", "server down")
    assert draft_from_json(payload) == (draft, key)
    store.delete("x")
    assert store.get("x") is None


def test_unreadable_row_counts_read_as_no_rows() -> None:
    """A tampered or truncated form must not crash the editor (it used to raise ValueError: HTTP 500)."""
    draft, _, _ = draft_from_form(form(goal_count="three", activity_count="-1"), CTX, TODAY)
    assert draft.goals == () and draft.activities == ()
    draft, _, _ = draft_from_form(form(goal_count="999"), CTX, TODAY)
    assert [g.description for g in draft.goals] == ["A1c", "Walk"]
