"""Reading billed services, conditions, care plans and times completely (issue 11 items 3-5, 7)."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_mapping.reader import read_facts
from rules.evaluate import evaluate
from rules.month import Month
from tests.support.facts import FakeClassifier, ready_facts

CPT = "http://www.ama-assn.org/go/cpt"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
PATIENT = {"resourceType": "Patient", "id": "p1", "birthDate": "1950-04-12"}


def claim(rtype: str = "Claim", status: str = "active", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": rtype,
        "id": "c1",
        "status": status,
        "patient": {"reference": "Patient/p1"},
        "provider": {"reference": "Organization/o1"},
        "careTeam": [{"sequence": 1, "provider": {"reference": "PractitionerRole/r1"}}],
        "item": [
            {
                "sequence": 1,
                "careTeamSequence": [1],
                "productOrService": {"coding": [{"system": CPT, "code": "99490"}]},
                "servicedDate": "2026-03-02",
            },
            {
                "sequence": 2,
                "productOrService": {"coding": [{"system": CPT, "code": "99439"}]},
                "servicedPeriod": {"start": "2026-03-01", "end": "2026-03-31"},
                "quantity": {"value": 2},
            },
        ],
        **extra,
    }


ROLE = {"resourceType": "PractitionerRole", "id": "r1", "practitioner": {"reference": "Practitioner/doc"}}


def test_claim_items_are_billed_services_with_their_performer() -> None:
    """cms-rules.md §2, §5.3: a CCM code billed in the month is evidence, whatever resource holds it."""
    billed = read_facts([PATIENT, ROLE, claim()]).billed
    assert [(b.code, b.status, b.performer, b.units) for b in billed] == [
        ("99490", "billed", "Practitioner/doc", 1),
        ("99439", "billed", "Practitioner/doc", 2),
    ]
    assert billed[1].end is not None and billed[1].end.day == 1 and billed[1].end.month == 4  # inclusive end


@pytest.mark.parametrize("status", ["cancelled", "draft", "entered-in-error"])
def test_claim_statuses_that_are_not_billing(status: str) -> None:
    assert read_facts([PATIENT, claim(status=status)]).billed == ()


def test_eob_outcome_error_was_never_adjudicated() -> None:
    assert read_facts([PATIENT, claim("ExplanationOfBenefit", outcome="error")]).billed == ()
    assert len(read_facts([PATIENT, claim("ExplanationOfBenefit", outcome="complete")]).billed) == 2


def test_finished_encounter_with_a_care_management_code_is_evidence() -> None:
    enc = {
        "resourceType": "Encounter",
        "id": "e1",
        "status": "finished",
        "subject": {"reference": "Patient/p1"},
        "type": [{"coding": [{"system": CPT, "code": "99490"}]}],
        "participant": [{"individual": {"reference": "Practitioner/doc"}}],
        "period": {"start": "2026-03-20T10:00:00Z"},
    }
    (b,) = read_facts([PATIENT, enc]).billed
    assert (b.id, b.code, b.performer) == ("Encounter/e1", "99490", "Practitioner/doc")
    assert read_facts([PATIENT, {**enc, "status": "cancelled"}]).billed == ()
    assert read_facts([PATIENT, {**enc, "status": "entered-in-error"}]).billed == ()


def test_claim_by_the_billing_practitioner_blocks_the_month() -> None:
    facts = read_facts([PATIENT, ROLE, claim()])
    v = evaluate(
        ready_facts(billed=facts.billed),
        "2026-03",
        billing_practitioner="Practitioner/doc",
        classifier=FakeClassifier(),
    )
    assert v.status == "blocked" and v.billed_in_month
    assert any(f.rule == "conflict.already-billed" and f.severity == "blocker" for f in v.findings)


def condition(**extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": "c1",
        "subject": {"reference": "Patient/p1"},
        "clinicalStatus": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}
            ]
        },
        "code": {"coding": [{"system": ICD10, "code": "I10"}]},
        **extra,
    }


@pytest.mark.parametrize(
    ("abatement", "abated_year"),
    [
        ({"abatementDateTime": "2021-05-01"}, 2021),
        ({"abatementPeriod": {"start": "2020-01-01", "end": "2020-06-01"}}, 2020),
        ({"abatementAge": {"value": 70, "unit": "years", "code": "a"}}, 2020),
        ({"abatementRange": {"low": {"value": 65, "code": "a"}}}, 2015),
        ({"abatementString": "resolved after surgery"}, None),
        ({"abatementBoolean": True}, None),
    ],
)
def test_abatement_in_every_form(abatement: dict[str, Any], abated_year: int | None) -> None:
    """cms-rules.md §6 step 1: drop abated conditions."""
    (c,) = read_facts([PATIENT, condition(**abatement)]).conditions
    assert c.abated
    assert (c.abatement.year if c.abatement else None) == abated_year


def test_status_codings_from_several_systems_prefer_hl7() -> None:
    c = condition(
        clinicalStatus={
            "coding": [
                {"system": "urn:local", "code": "A"},
                {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "resolved"},
            ]
        },
        verificationStatus={"text": "Provisional"},
    )
    (rec,) = read_facts([PATIENT, c]).conditions
    assert (rec.clinical_status, rec.verification_status) == ("resolved", "provisional")


def test_text_only_and_local_only_conditions_are_warned_and_exact_names_classified() -> None:
    from rules.chronic import classify

    resources = [
        PATIENT,
        condition(id="dm", code={"coding": [{"system": ICD10, "code": "E11.9"}]}),
        condition(id="t1", code={"text": "Chronic sinusitis"}),  # exactly a value-set name
        condition(id="t2", code={"text": "sugar problems"}),
        condition(
            id="l1", code={"coding": [{"system": "urn:oid:1.2.3", "code": "77"}], "text": "HTN (local)"}
        ),
    ]
    v = evaluate(ready_facts(conditions=read_facts(resources).conditions), "2026-03", classifier=classify)
    assert {c.condition_key for c in v.chronic_conditions} == {"diabetes", "chronic_sinusitis"}
    warn = next(f for f in v.findings if f.rule == "eligibility.uncoded-condition")
    assert warn.severity == "warning" and set(warn.evidence) == {"Condition/t2", "Condition/l1"}


def test_care_plan_intent_is_read() -> None:
    plan = {
        "resourceType": "CarePlan",
        "id": "cp",
        "status": "active",
        "intent": "proposal",
        "subject": {"reference": "Patient/p1"},
    }
    assert read_facts([PATIENT, plan]).care_plans[0].intent == "proposal"
    del plan["intent"]
    assert read_facts([PATIENT, plan]).care_plans[0].intent == ""


def test_durations_are_real_minutes_across_dst() -> None:
    """cms-rules.md §3.6: minutes are real time; 01:50 to 03:05 on 8 March 2026 in New York is 15 minutes."""
    enc = {
        "resourceType": "Encounter",
        "id": "t",
        "status": "finished",
        "subject": {"reference": "Patient/p1"},
        "type": [
            {"coding": [{"system": "https://ccm-ready.org/fhir/CodeSystem/care-program", "code": "ccm"}]}
        ],
        "participant": [{"individual": {"reference": "Practitioner/rn"}}],
        "period": {"start": "2026-03-08T01:50:00", "end": "2026-03-08T03:05:00"},
    }
    (e,) = read_facts([PATIENT, enc], tz="America/New_York").time_entries
    assert e.minutes == 15


def test_month_past_the_newest_pack_warns_and_names_the_year() -> None:
    """Issue 11 item 7: January 2027 is evaluated with cms-pfs-2026 and says so."""
    v = evaluate(ready_facts(time_entries=()), Month(2027, 1), classifier=FakeClassifier())
    f = next(f for f in v.findings if f.rule == "policy.pack-stale")
    assert v.policy == "cms-pfs-2026" and f.severity == "warning" and "CY2026" in f.message
    assert not any(f.rule == "policy.pack-stale" for f in evaluate(ready_facts(), "2026-03").findings)


def test_condition_category_must_be_a_diagnosis() -> None:
    """cms-rules.md §6 step 1: problem-list-item or encounter-diagnosis (not a health concern)."""
    hl7 = "http://terminology.hl7.org/CodeSystem/condition-category"
    concern = condition(
        category=[
            {
                "coding": [
                    {
                        "system": "http://hl7.org/fhir/us/core/CodeSystem/condition-category",
                        "code": "health-concern",
                    }
                ]
            }
        ]
    )
    local = condition(category=[{"coding": [{"system": "urn:oid:1.2.3", "code": "1"}]}])
    listed = condition(category=[{"coding": [{"system": hl7, "code": "problem-list-item"}]}])
    assert read_facts([PATIENT, concern]).conditions[0].categories == ("health-concern",)
    assert read_facts([PATIENT, local]).conditions[0].categories == ()
    two = [
        PATIENT,
        {**listed, "id": "a"},
        {**concern, "id": "b", "code": {"coding": [{"system": ICD10, "code": "E11.9"}]}},
    ]
    v = evaluate(ready_facts(conditions=read_facts(two).conditions), "2026-03", classifier=FakeClassifier())
    assert v.status == "not-eligible"


def test_estimates_are_not_bills_and_r5_participant_actor_is_read() -> None:
    assert read_facts([PATIENT, claim(use="preauthorization")]).billed == ()
    enc = {
        "resourceType": "Encounter",
        "id": "v",
        "status": "finished",
        "subject": {"reference": "Patient/p1"},
        "type": [{"coding": [{"system": CPT, "code": "99214"}]}],
        "participant": [{"actor": {"reference": "Practitioner/doc"}}],
        "period": {"start": "2026-01-01"},
    }
    assert read_facts([PATIENT, enc]).visits[0].participants == ("Practitioner/doc",)
