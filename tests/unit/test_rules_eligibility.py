"""Eligibility rules: distinct chronic conditions, death, risk attestation."""

from __future__ import annotations

from dataclasses import replace

import pytest

from rules.records import Coding, PatientRecord
from tests.support.facts import (
    DOC,
    SNOMED,
    FakeClassifier,
    attestation,
    codes_of,
    condition,
    entry,
    ev,
    finding,
    ready_facts,
    rules_of,
)


def test_baseline_is_ready() -> None:
    v = ev(ready_facts())
    assert v.status == "ready"
    assert codes_of(v) == [("99490", 1)]
    assert rules_of(v, "blocker") == set() and rules_of(v, "warning") == set()


def test_one_chronic_condition_is_not_eligible() -> None:
    v = ev(ready_facts(conditions=(condition("dm", "E11.9"), condition("cold", "J00"))))
    assert v.status == "not-eligible" and v.codes == ()
    f = finding(v, "eligibility.chronic-conditions")
    assert f.severity == "blocker" and "found 1 (Diabetes)" in f.message
    assert f.evidence == ("Condition/dm",)
    assert "eligibility.risk-attestation" not in rules_of(v)


def test_codes_of_one_condition_count_once() -> None:
    v = ev(ready_facts(conditions=(condition("a", "E11.9"), condition("b", "E11.65"))))
    assert v.status == "not-eligible"
    # Sorted by condition, then code: the verdict does not depend on the server's order.
    assert [(c.code, c.condition_key) for c in v.chronic_conditions] == [
        ("E11.65", "diabetes"),
        ("E11.9", "diabetes"),
    ]
    v2 = ev(
        ready_facts(conditions=(condition("a", "E11.9"), condition("b", "E11.65"), condition("c", "I10")))
    )
    assert v2.status == "ready" and len(v2.chronic_conditions) == 3
    reordered = ev(
        ready_facts(conditions=(condition("c", "I10"), condition("b", "E11.65"), condition("a", "E11.9")))
    )
    assert reordered.chronic_conditions == v2.chronic_conditions and reordered.findings == v2.findings


def test_snomed_and_icd_codes_of_one_condition_count_once() -> None:
    v = ev(ready_facts(conditions=(condition("a", "E11.9"), condition("b", "44054006", SNOMED))))
    assert v.status == "not-eligible"


def test_same_code_on_two_conditions_is_one_entry_with_both_evidence() -> None:
    v = ev(ready_facts(conditions=(condition("a", "I10"), condition("b", "I10"), condition("c", "J44.9"))))
    assert v.status == "ready"
    htn = [c for c in v.chronic_conditions if c.code == "I10"]
    assert len(htn) == 1 and htn[0].evidence == ("Condition/a", "Condition/b")


def test_condition_status_filters() -> None:
    conds = (
        condition("dm", "E11.9"),
        condition("htn", "I10", clinical_status="resolved"),
        condition("hf", "I50.9", verification_status="refuted"),
        condition("copd", "J44.9", verification_status="entered-in-error"),
        condition("cold", "J00"),
    )
    v = ev(ready_facts(conditions=conds))
    assert v.status == "not-eligible"
    reviewed = {r.evidence: r for r in v.conditions_reviewed}
    assert len(reviewed) == 5
    assert reviewed["Condition/dm"].chronic and reviewed["Condition/dm"].source == "CCIR"
    assert not reviewed["Condition/htn"].chronic and "resolved" in reviewed["Condition/htn"].reason
    assert "refuted" in reviewed["Condition/hf"].reason
    assert "entered-in-error" in reviewed["Condition/copd"].reason
    assert not reviewed["Condition/cold"].chronic and reviewed["Condition/cold"].source is None
    assert reviewed["Condition/cold"].reason == "not in any chronic list"


def test_recurrent_clinical_status_counts_missing_does_not() -> None:
    """cms-rules.md §6 step 1: take Conditions whose clinicalStatus is active (recurrence, relapse)."""
    v = ev(
        ready_facts(
            conditions=(
                condition("dm", "E11.9", clinical_status="relapse"),
                condition("htn", "I10", clinical_status="recurrence"),
            )
        )
    )
    assert v.status == "ready"
    missing = ev(
        ready_facts(conditions=(condition("dm", "E11.9", clinical_status=None), condition("htn", "I10")))
    )
    assert missing.status == "not-eligible"


def test_abated_before_the_month_does_not_count() -> None:
    from tests.support.facts import at

    v = ev(
        ready_facts(
            conditions=(
                condition("dm", "E11.9"),
                condition("htn", "I10", abatement=at("2026-02-01T00:00:00")),
            )
        )
    )
    assert v.status == "not-eligible"


def test_condition_with_several_codings_uses_the_chronic_one() -> None:
    from rules.records import ConditionRecord

    multi = ConditionRecord(
        "Condition/m",
        (Coding("http://example.org", "x"), Coding(SNOMED, "38341003")),
        clinical_status="active",
    )
    v = ev(ready_facts(conditions=(condition("dm", "E11.9"), multi)))
    assert v.status == "ready"
    review = next(r for r in v.conditions_reviewed if r.evidence == "Condition/m")
    assert review.code == "38341003" and review.chronic


def test_a_failing_classifier_never_sinks_the_verdict() -> None:
    def broken(coding: Coding) -> object:
        raise ValueError("bad code")

    v = ev(ready_facts(), classifier=broken)
    assert v.status == "not-eligible"
    assert all("could not classify" in r.reason for r in v.conditions_reviewed)


def test_injected_classifier_is_used() -> None:
    fake = FakeClassifier()
    ev(ready_facts(), classifier=fake)
    assert [c.code for c in fake.calls] == ["E11.9", "I10"]


def _dead(when: str | None) -> PatientRecord:
    from tests.support.facts import at

    return PatientRecord(
        "Patient/p1", deceased=True, deceased_at=at(when) if when else None, general_practitioners=(DOC,)
    )


def test_died_before_the_month_is_not_eligible() -> None:
    v = ev(ready_facts(patient=_dead("2026-02-20T10:00:00")))
    assert v.status == "not-eligible" and finding(v, "eligibility.deceased").severity == "blocker"


def test_died_without_date_is_not_eligible() -> None:
    v = ev(ready_facts(patient=_dead(None)))
    assert v.status == "not-eligible" and "without a date" in finding(v, "eligibility.deceased").message


def test_died_during_the_month_drops_later_minutes() -> None:
    facts = ready_facts(
        patient=_dead("2026-03-20T00:00:00"),
        time_entries=(entry("a", "2026-03-03T14:00:00", 15), entry("b", "2026-03-25T14:00:00", 15)),
    )
    v = ev(facts)
    assert finding(v, "eligibility.deceased-in-month").severity == "info"
    assert v.minutes.clinical_staff == 15 and v.status == "not-yet"
    assert finding(v, "time.after-death").evidence == ("Encounter/b",)
    after = ev(facts, "2026-02")
    assert "eligibility.deceased" not in rules_of(after)


def test_risk_attestation_missing_is_a_warning() -> None:
    v = ev(ready_facts(attestations=()))
    assert v.status == "ready"
    assert finding(v, "eligibility.risk-attestation").severity == "warning"


def test_risk_attestation_needs_a_practitioner() -> None:
    v = ev(ready_facts(attestations=(attestation(practitioner=None),)))
    assert "eligibility.risk-attestation" in rules_of(v)


def test_risk_attestation_after_the_month_does_not_count() -> None:
    v = ev(ready_facts(attestations=(attestation(when="2026-04-02T00:00:00"),)))
    assert "eligibility.risk-attestation" in rules_of(v)
    assert "eligibility.risk-attestation" not in rules_of(ev(replace(ready_facts()), "2026-03"))


def test_real_classifier_counts_codes_of_one_condition_once() -> None:
    chronic = pytest.importorskip("rules.chronic")
    one = ready_facts(conditions=(condition("a", "E11.9"), condition("b", "E11.65"), condition("c", "J00")))
    v = ev(one, classifier=chronic.classify)
    assert v.status == "not-eligible"
    assert {c.condition_key for c in v.chronic_conditions} == {"diabetes"} and len(v.chronic_conditions) == 2
    two = ready_facts(conditions=(condition("a", "E11.9"), condition("b", "E11.65"), condition("c", "I10")))
    assert ev(two, classifier=chronic.classify).status == "ready"
