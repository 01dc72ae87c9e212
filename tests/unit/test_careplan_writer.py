"""fhir_mapping.write_careplan: strict R4, revisions with If-Match, reading back; templates as data."""

from __future__ import annotations

import csv
import importlib
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from fhir_mapping.codes import EXT_CARE_PLAN_REVIEWED
from fhir_mapping.reader import read_facts
from fhir_mapping.write_careplan import (
    care_plan_transaction,
    draft_from_resources,
    share_communication,
    share_transaction,
)
from fhir_mapping.write_provenance import WriteError
from rules.careplan_validation import TEXT_SECTIONS, ActivityDraft, CarePlanDraft, GoalDraft
from smart_app.careplan import prefill

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


def draft(**kw: Any) -> CarePlanDraft:
    base: dict[str, Any] = dict(
        patient_id="p1",
        conditions=("Condition/c1",),
        sections={code: f"{label}." for code, label, _ in TEXT_SECTIONS},
        goals=(
            GoalDraft(
                "Blood sugar",
                "HbA1c",
                "< 7 %",
                date(2027, 5, 1),
                measure_code="http://loinc.org|4548-4",
                source="Template: ADA",
            ),
            GoalDraft("No admissions", "HF admissions", "none this year", date(2027, 5, 1)),
        ),
        activities=(
            ActivityDraft("Monthly call", "Practitioner/rn"),
            ActivityDraft("Weigh daily", "Patient"),
        ),
        author="Practitioner/dr",
        period_start=date(2026, 11, 1),
    )
    base.update(kw)
    return CarePlanDraft(**base)


def strict(resource: dict[str, Any]) -> None:
    rtype = resource["resourceType"]
    getattr(importlib.import_module(f"fhirclient.models.{rtype.lower()}"), rtype)(resource, strict=True)


def tx(d: CarePlanDraft, **kw: Any) -> dict[str, Any]:
    return care_plan_transaction(
        d,
        plan_key="k1",
        user="Practitioner/dr",
        recorded=NOW,
        pack_id="cms-pfs-2026",
        pack_version="2026.1",
        **kw,
    )


def test_new_plan_transaction_shape() -> None:
    bundle = tx(draft())
    methods = [(e["resource"]["resourceType"], e["request"]["method"]) for e in bundle["entry"]]
    assert methods == [("Goal", "PUT"), ("Goal", "PUT"), ("CarePlan", "POST"), ("Provenance", "POST")]
    goal1, goal2, plan, prov = (e["resource"] for e in bundle["entry"])
    for res in (goal1, goal2, plan, prov):
        strict(res)
    assert bundle["entry"][2]["request"]["ifNoneExist"].startswith("identifier=")
    assert plan["status"] == "active" and plan["intent"] == "plan"
    assert plan["category"][0]["coding"][0]["code"] == "assess-plan"
    assert plan["category"][1]["coding"][0]["code"] == "ccm"
    assert plan["author"] == {"reference": "Practitioner/dr"} and plan["period"] == {"start": "2026-11-01"}
    assert plan["goal"] == [
        {"reference": bundle["entry"][0]["fullUrl"]},
        {"reference": bundle["entry"][1]["fullUrl"]},
    ]
    assert plan["activity"][1]["detail"]["performer"] == [{"display": "Patient"}]
    assert plan["activity"][0]["detail"]["performer"] == [{"reference": "Practitioner/rn"}]
    assert {"url": EXT_CARE_PLAN_REVIEWED, "valueDateTime": "2026-11-23T15:00:00+00:00"} in plan["extension"]
    assert goal1["target"][0]["detailQuantity"]["comparator"] == "<"
    assert goal1["target"][0]["measure"]["coding"][0]["code"] == "4548-4"
    assert goal2["target"][0]["detailString"] == "none this year"
    assert goal1["extension"][0]["valueString"] == "Template: ADA"
    assert prov["target"][0]["reference"] == bundle["entry"][2]["fullUrl"]
    assert prov["activity"]["coding"][0]["code"] == "CREATE"


def test_retried_new_save_reuses_goal_ids() -> None:
    assert [e["request"]["url"] for e in tx(draft())["entry"][:2]] == [
        e["request"]["url"] for e in tx(draft())["entry"][:2]
    ]


def test_revision_uses_if_match_and_cancels_removed_goals() -> None:
    stored_goals = [
        {
            "resourceType": "Goal",
            "id": "g1",
            "lifecycleStatus": "active",
            "description": {"text": "A"},
            "subject": {"reference": "Patient/p1"},
            "identifier": [{"system": "x", "value": "y"}],
            "meta": {"versionId": "1"},
        },
        {
            "resourceType": "Goal",
            "id": "g2",
            "lifecycleStatus": "active",
            "description": {"text": "B"},
            "subject": {"reference": "Patient/p1"},
        },
    ]
    kept = GoalDraft("A", "HbA1c", "< 7 %", date(2027, 5, 1), goal_id="g1")
    bundle = tx(
        draft(plan_id="cp1", version="3", goals=(kept,)),
        existing={"created": "2026-01-01"},
        stored_goals=stored_goals,
    )
    reqs = [(e["resource"]["resourceType"], e["request"]) for e in bundle["entry"]]
    assert reqs[0] == ("Goal", {"method": "PUT", "url": "Goal/g1"})
    assert (
        reqs[1][1] == {"method": "PUT", "url": "Goal/g2"}
        and bundle["entry"][1]["resource"]["lifecycleStatus"] == "cancelled"
    )
    assert reqs[2] == ("CarePlan", {"method": "PUT", "url": "CarePlan/cp1", "ifMatch": 'W/"3"'})
    plan = bundle["entry"][2]["resource"]
    assert plan["id"] == "cp1" and plan["created"] == "2026-01-01"
    prov = bundle["entry"][3]["resource"]
    assert prov["activity"]["coding"][0]["code"] == "UPDATE"
    assert prov["entity"] == [{"role": "revision", "what": {"reference": "CarePlan/cp1/_history/3"}}]


def test_revision_without_version_is_refused() -> None:
    with pytest.raises(WriteError, match="If-Match"):
        tx(draft(plan_id="cp1", version=None))


def test_author_must_be_a_practitioner() -> None:
    with pytest.raises(WriteError, match="billing practitioner"):
        tx(draft(author="Patient/p1"))


def test_read_back_round_trip() -> None:
    d = draft()
    bundle = tx(d)
    plan = dict(bundle["entry"][2]["resource"], id="cp1", meta={"versionId": "1"})
    goals = [dict(e["resource"]) for e in bundle["entry"][:2]]
    plan["goal"] = [{"reference": f"Goal/{g['id']}"} for g in goals]
    back = draft_from_resources(plan, goals, "p1")
    assert back.sections == d.sections and back.conditions == d.conditions and back.author == d.author
    assert [(g.description, g.measure, g.target, g.due, g.source) for g in back.goals] == [
        ("Blood sugar", "HbA1c", "< 7 %", date(2027, 5, 1), "Template: ADA"),
        ("No admissions", "HF admissions", "none this year", date(2027, 5, 1), ""),
    ]
    assert back.activities == d.activities and back.plan_id == "cp1" and back.version == "1"
    facts = read_facts([{"resourceType": "Patient", "id": "p1"}, plan], "p1")
    (record,) = facts.care_plans
    assert record.programs == ("ccm",) and record.author == "Practitioner/dr"
    assert record.last_reviewed == NOW


def test_share_communication_is_read_as_shared() -> None:
    comm = share_communication(
        patient_id="p1",
        plan_id="cp1",
        plan_version="2",
        method="email",
        recipient="Caregiver: Ann",
        sender="Practitioner/rn",
        sent=NOW,
        share_key="s1",
    )
    strict(comm)
    assert comm["medium"][0]["coding"][0]["code"] == "EMAILWRIT"
    assert comm["recipient"] == [{"display": "Caregiver: Ann"}]
    bundle = share_transaction(comm, user="Practitioner/rn", recorded=NOW, pack_id="p", pack_version="1")
    assert bundle["entry"][0]["request"]["ifNoneExist"].startswith("identifier=")
    plan = {
        "resourceType": "CarePlan",
        "id": "cp1",
        "status": "active",
        "intent": "plan",
        "subject": {"reference": "Patient/p1"},
    }
    facts = read_facts([{"resourceType": "Patient", "id": "p1"}, plan, dict(comm, id="c1")], "p1")
    assert facts.care_plans[0].shared_with_patient_at == NOW


@pytest.mark.parametrize(
    ("method", "recipient", "error"),
    [("fax", "patient", "paper, portal, email"), ("paper", " ", "who received")],
)
def test_share_bad_input(method: str, recipient: str, error: str) -> None:
    with pytest.raises(WriteError, match=error):
        share_communication(
            patient_id="p1",
            plan_id="cp1",
            plan_version=None,
            method=method,
            recipient=recipient,
            sender="Practitioner/rn",
            sent=NOW,
            share_key="s",
        )


# --------------------------------------------------------------------------- templates as data


def test_templates_cover_the_required_conditions_and_cite_every_entry() -> None:
    keys = {t.condition_key for t in prefill.templates()}
    assert {
        "diabetes",
        "hypertension",
        "heart_failure",
        "copd",
        "chronic_kidney_disease",
        "depression",
    } <= keys
    with (ROOT / "rules" / "valuesets" / "condition_groups.csv").open(encoding="utf-8") as fh:
        known = {row["condition_key"] for row in csv.DictReader(fh)}
    assert keys <= known, "template condition keys must be the rules core's condition keys"
    for t in prefill.templates():
        assert t.goals and t.interventions
        for s in (*t.goals, *t.interventions):
            assert len(s.source) > 20, s.key
        for g in t.goals:
            assert g.measure and g.target and 1 <= g.due_months <= 24


def test_accepting_a_suggestion_keeps_its_source_and_dates_the_target() -> None:
    s = prefill.suggestion("diabetes:goal:0")
    assert s is not None
    row = prefill.accept(s, date(2026, 8, 31))
    assert isinstance(row, GoalDraft) and row.due == date(2027, 2, 28)
    assert row.source.startswith("Template \u201cDiabetes\u201d: ADA Standards of Care")
    assert prefill.suggestion("nope:goal:0") is None


def test_patients_conditions_come_first() -> None:
    assert next(t.condition_key for t in prefill.templates_for(["copd"])) == "copd"
